"""Attention regions, their IoU and the +-eps examples by hand (dhat.analysis.attention_shift)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dhat.analysis.attention_shift import (
    AttentionShiftConfig,
    attention_region,
    attention_shift,
    region_iou,
    shifted_examples,
)
from tests.evaluation.helpers import linear_setup, small_cnn_setup


def test_attention_region_is_the_top_share_of_pixels_ties_by_position():
    maps = torch.tensor([[[0.9, 0.1], [0.6, 0.0]], [[0.5, 0.5], [0.5, 0.5]]])
    region = attention_region(maps, 0.5)
    assert region[0].tolist() == [[True, False], [True, False]]
    # A constant map: the quantile rule marks the first pixels (by position) as background,
    # so the attention region is the last two.
    assert region[1].tolist() == [[False, False], [True, True]]
    assert region.flatten(1).sum(1).tolist() == [2, 2]


def test_region_iou_hand_computed():
    a = torch.tensor([[[True, False], [True, False]], [[False, False], [False, False]], [[True, True], [True, True]]])
    b = torch.tensor([[[True, True], [False, False]], [[False, False], [False, False]], [[True, False], [False, False]]])
    # 1 shared of 3 in the union; both empty -> 1; 1 of 4.
    assert torch.allclose(region_iou(a, b), torch.tensor([1 / 3, 1.0, 0.25]))
    with pytest.raises(ValueError, match="same shape"):
        region_iou(a, b[:, :1])


@pytest.mark.parametrize("radius", [-12 / 255, -4 / 255, 4 / 255, 12 / 255])
def test_shifted_examples_stay_in_their_radius_and_in_the_unit_interval(radius):
    model, x, y = small_cnn_setup(n=8)
    x = x.clone()
    x[0] = 0.0  # pixels at the bounds must stay inside [0, 1]
    x[1] = 1.0
    torch.manual_seed(0)
    shifted = shifted_examples(model, x, y, radius, steps=5)
    assert (shifted - x).abs().max() <= abs(radius) + 1e-6
    assert shifted.min() >= 0.0 and shifted.max() <= 1.0
    assert not torch.equal(shifted, x)
    assert torch.equal(shifted_examples(model, x, y, 0.0, steps=5), x)


def test_inverse_examples_lower_and_adversarial_examples_raise_the_loss():
    model, _, _, x, y = linear_setup()
    torch.manual_seed(0)
    loss = {r: F.cross_entropy(model(shifted_examples(model, x, y, r, 10)), y).item() for r in (-0.1, 0.0, 0.1)}
    assert loss[-0.1] < loss[0.0] < loss[0.1]


def test_attention_shift_table_against_hand_computed_regions(identity_classifier):
    # Class 0 of the identity classifier: Grad-CAM is the min-max normalised image (tests/test_attention.py).
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 4, 4, generator=generator)
    y = torch.zeros(6, dtype=torch.long)
    truth = torch.rand(6, 4, 4, generator=generator) > 0.5
    config = AttentionShiftConfig(radii=(2 / 255, 6 / 255), steps=3, attention_share=0.25, n_images=None, batch_size=4)
    table = attention_shift(identity_classifier, x, y, config, truth)
    assert sorted(set(table["radius_255"])) == [-6.0, -2.0, 0.0, 2.0, 6.0]
    assert len(table) == 5 * 5  # four IoU references and the accuracy, per signed radius
    clean = table[table["radius_255"] == 0.0].set_index("quantity")
    assert clean.at["iou_clean_attention", "estimate"] == 1.0 and clean.at["iou_clean_background", "estimate"] == 0.0
    flat = x.flatten(1)
    maps = ((flat - flat.min(1, keepdim=True).values) / (flat.max(1, keepdim=True).values - flat.min(1, keepdim=True).values))
    region = attention_region(maps.view(6, 4, 4), 0.25)
    expected = region_iou(region, truth).mean().item()
    assert clean.at["iou_true_foreground", "estimate"] == pytest.approx(expected)
    assert clean.at["iou_true_background", "estimate"] == pytest.approx(region_iou(region, ~truth).mean().item())
    assert clean.at["accuracy", "estimate"] == pytest.approx(100.0 * (identity_classifier(x).argmax(1) == y).float().mean().item())
    assert (table["low"] <= table["estimate"] + 1e-12).all() and (table["estimate"] <= table["high"] + 1e-12).all()
    # Without true masks only the clean-region references are measured.
    assert set(attention_shift(identity_classifier, x, y, config)["quantity"]) == {
        "iou_clean_attention", "iou_clean_background", "accuracy"}


def test_attention_shift_restores_the_model_mode_and_is_reproducible():
    model, x, y = small_cnn_setup(n=6)
    model.train()
    config = AttentionShiftConfig(radii=(8 / 255,), steps=2, n_images=None)
    first = attention_shift(model, x, y, config)
    assert model.training
    np.testing.assert_array_equal(first["estimate"].to_numpy(), attention_shift(model, x, y, config)["estimate"].to_numpy())


@pytest.mark.parametrize(("values", "message"), [
    ({"radii": []}, "radii"), ({"radii": [-4 / 255]}, "radii"), ({"steps": 0}, "steps"),
    ({"attention_share": 1.0}, "attention_share"), ({"n_images": 0}, "n_images"), ({"radius": 1}, "radius"),
])
def test_config_errors_name_the_parameter(values, message):
    with pytest.raises(ValueError, match=f"analysis.attention_shift.{message}"):
        AttentionShiftConfig.from_dict(values)


def test_radii_accept_fractions_and_are_signed_in_order():
    config = AttentionShiftConfig.from_dict({"radii": ["8/255", 4 / 255]})
    assert config.signed_radii() == pytest.approx((-8 / 255, -4 / 255, 0.0, 4 / 255, 8 / 255))
