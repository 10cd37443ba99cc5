"""Background threshold rules and mask statistics on hand-made maps."""

from __future__ import annotations

import pytest
import torch

from dhat.attention.masks import MaskRule, background_mask, mask_statistics

# One 2x3 map: values chosen so every rule's answer can be read off by hand.
MAP = torch.tensor([[[0.00, 0.05, 0.20], [0.05, 0.90, 1.00]]])
TRUE_FOREGROUND = torch.tensor([[[False, False, False], [False, True, True]]])


def test_absolute_rule_marks_pixels_below_omega():
    background = background_mask(MAP, MaskRule("absolute", omega=0.1))
    assert background.tolist() == [[[True, True, False], [True, False, False]]]


def test_quantile_rule_marks_the_lowest_share_with_ties_broken_by_position():
    # Half of 6 pixels = 3: 0.00, then the two 0.05 (positions 1 and 3).
    assert background_mask(MAP, MaskRule("quantile", background_share=0.5)).tolist() == [
        [[True, True, False], [True, False, False]]]
    # A third = 2 pixels: 0.00 and the first 0.05 in reading order; the tied one at position 3 stays foreground.
    assert background_mask(MAP, MaskRule("quantile", background_share=1 / 3)).tolist() == [
        [[True, True, False], [False, False, False]]]
    constant = torch.zeros(2, 4, 4)
    assert background_mask(constant, MaskRule("quantile", background_share=0.25)).flatten(1).sum(1).tolist() == [4, 4]


def test_statistics_coverage_and_iou_with_the_true_background():
    stats = mask_statistics(MAP, MaskRule("absolute", omega=0.1), TRUE_FOREGROUND)
    # Marked background: 3 pixels of 6. True background: 4 pixels; intersection 3, union 4.
    assert stats["coverage"] == pytest.approx(0.5)
    assert stats["iou_true_background"] == pytest.approx(3 / 4)
    assert stats["true_background_share"] == pytest.approx(4 / 6)
    two = torch.cat([MAP, torch.ones_like(MAP)])  # second image: nothing marked at omega 0.1
    stats = mask_statistics(two, MaskRule("absolute", omega=0.1))
    assert (stats["coverage"], stats["coverage_min"], stats["coverage_max"]) == pytest.approx((0.25, 0.0, 0.5))
    assert stats["iou_true_background"] is None


def test_bad_rules_and_shapes_are_named():
    with pytest.raises(ValueError, match=r"dhat\.method\.params\.mask_rule"):
        MaskRule("median").validate("dhat.method.params")
    with pytest.raises(ValueError, match=r"background_share"):
        MaskRule("quantile", background_share=1.5).validate("x")
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        background_mask(MAP[0], MaskRule())
    with pytest.raises(ValueError, match="true_foreground"):
        mask_statistics(MAP, MaskRule(), TRUE_FOREGROUND[:, :1])
