"""``fit``: which attention maps a method trains with, and what the checkpoint records about them."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from dhat.attention.masks import MaskRule
from dhat.engine.fitting import describe_masks, fit, split_method_params, training_maps
from dhat.methods import MaskSettings, create_method
from tests.methods.helpers import configured

TRAIN = {
    "images": np.zeros((2, 4, 4, 3), np.uint8),
    "labels": np.array([0, 1]),
    "masks": np.pad(np.full((2, 2, 2), 255, np.uint8), ((0, 0), (1, 1), (1, 1))),  # 4 foreground pixels of 16
}
GRADCAM = {"masks": np.full((2, 4, 4), 10, np.uint8)}  # 10/255 < 0.1 everywhere: all background at omega 0.1


def test_methods_without_masks_get_none_and_mask_methods_get_their_source():
    assert training_maps(create_method("pgd_at"), TRAIN, GRADCAM, "pgd_at") is None
    np.testing.assert_array_equal(training_maps(create_method("dhat"), TRAIN, GRADCAM, "dhat"), GRADCAM["masks"])
    oracle = create_method("dhat", {"mask_source": "true"})
    np.testing.assert_array_equal(training_maps(oracle, TRAIN, GRADCAM, "dhat_true_masks"), TRAIN["masks"])
    wrapped = configured("dhat_awp", {"base": {"mask_source": "true"}})
    np.testing.assert_array_equal(training_maps(wrapped, TRAIN, None, "dhat_awp"), TRAIN["masks"])


def test_no_silent_fallback_between_mask_sources():
    with pytest.raises(ValueError, match="needs attention masks"):
        training_maps(create_method("dhat"), TRAIN, None, "dhat")  # the data's true masks are not used instead
    without_truth = {k: v for k, v in TRAIN.items() if k != "masks"}
    with pytest.raises(ValueError, match=r"dhat_true_masks: .*mask_source 'true'.*no true foreground masks.*--namespaces"):
        training_maps(create_method("dhat", {"mask_source": "true"}), without_truth, GRADCAM, "dhat_true_masks")
    with pytest.raises(ValueError, match=r"mask_source 'external'.*set data\.external_masks"):
        training_maps(create_method("dhat", {"mask_source": "external"}), TRAIN, GRADCAM, "dhat")


def test_external_masks_come_from_the_training_set():
    external = np.full((2, 4, 4), 7, np.uint8)
    method = create_method("dhat", {"mask_source": "external"})
    np.testing.assert_array_equal(training_maps(method, {**TRAIN, "external_masks": external}, GRADCAM, "dhat"), external)


def test_fit_refuses_dhat_without_masks_before_training():
    with pytest.raises(ValueError, match="needs attention masks"):
        fit(TRAIN, TRAIN, None, {"num_classes": 2, "image_shape": [4, 4, 3], "mean": [0] * 3, "std": [1] * 3},
            {"name": "dhat"}, {"name": "small_cnn", "width": 2}, {"epochs": 1}, "cpu")


def test_mask_description_measures_coverage_and_iou_and_warns_when_low(caplog):
    true_rule = MaskSettings("true", MaskRule("absolute", omega=0.5))
    stats = describe_masks(true_rule, TRAIN["masks"], TRAIN["masks"], "x")
    assert stats["coverage"] == pytest.approx(12 / 16) and stats["iou_true_background"] == pytest.approx(1.0)
    assert stats["source"] == "true" and stats["rule"] == "absolute" and stats["omega"] == 0.5
    sparse = np.full((2, 4, 4), 200, np.uint8)
    sparse[:, 0, 0] = 0  # one background pixel of 16 per image: coverage 6.25 %
    with caplog.at_level(logging.WARNING, logger="dhat.engine.fitting"):
        stats = describe_masks(MaskSettings("gradcam", MaskRule()), sparse, TRAIN["masks"], "dhat")
    assert stats["coverage"] == pytest.approx(1 / 16)
    assert stats["iou_true_background"] == pytest.approx(1 / 12)  # 1 pixel of the 12 true background pixels
    assert "only 6.2% of the training pixels" in caplog.text


def test_the_oracle_uses_the_exact_true_background_whatever_the_rule():
    """A quantile cut would force 60% background on every image; the true masks' background is exact."""
    wide = np.pad(np.full((1, 3, 3), 255, np.uint8), ((0, 0), (0, 1), (0, 1)))  # 9 of 16 pixels are the digit
    for rule in ("quantile", "absolute"):
        settings = create_method("dhat", {"mask_source": "true", "mask_rule": rule}).mask_settings()
        stats = describe_masks(settings, wide, wide, "dhat_true_masks")
        assert stats["coverage"] == pytest.approx(7 / 16) and stats["iou_true_background"] == pytest.approx(1.0)
    gradcam = create_method("dhat", {"mask_rule": "quantile", "background_share": 0.6}).mask_settings()
    assert (gradcam.rule.rule, gradcam.rule.background_share) == ("quantile", 0.6)


def test_method_sections_are_split_and_checked():
    assert split_method_params({"name": "dhat", "params": {"lambda1": 2}}, "s") == ("dhat", {"lambda1": 2}, {})
    with pytest.raises(ValueError, match=r"dhat\.method\.name is missing"):
        split_method_params({"params": {}}, "dhat.method")
    with pytest.raises(ValueError, match=r"dhat\.method\.trainin"):
        split_method_params({"name": "dhat", "trainin": {}}, "dhat.method")
