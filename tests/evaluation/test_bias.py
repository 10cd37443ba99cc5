"""Background reliance on data with known foregrounds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dhat.evaluation import background_bias_metrics

pytestmark = pytest.mark.usefixtures("single_thread")


def test_background_bias_metrics_on_predictable_grad_cam(identity_classifier: nn.Module) -> None:
    # identity_classifier: logits = [2 m, -m] with m the mean pixel; Grad-CAM for class 0 is the
    # image itself (min-max normalised) and for class 1 is empty (negative weight, ReLU).
    image = torch.zeros(1, 4, 4)
    image[0, :2, :2] = 1.0  # 4 bright pixels: the Grad-CAM foreground at threshold 0.6
    image[0, 3, :] = 0.5  # 4 half-bright pixels: below threshold, but they hold Grad-CAM mass
    exact = torch.zeros(4, 4, dtype=torch.bool)
    exact[:2, :2] = True
    wider = torch.zeros(4, 4, dtype=torch.bool)
    wider[:2, :] = True  # 8 pixels: IoU with the 4-pixel CAM region is 1/2
    images = image.expand(3, 1, 4, 4).clone()
    labels = torch.tensor([0, 0, 1])
    masks = torch.stack([exact, wider, exact])
    aligned = image.expand(2, 1, 4, 4).clone()
    out = background_bias_metrics(
        identity_classifier,
        {"test": (images, labels, masks), "test_aligned": (aligned, torch.tensor([0, 0]), None)},
        cam_threshold=0.6,
        batch_size=2,
    )
    test = out["variants"]["test"]
    assert test["accuracy"] == pytest.approx(200 / 3)  # positive mean -> class 0; the label-1 image is wrong
    # IoUs 1, 1/2 and 0 (empty CAM vs non-empty mask).
    assert test["cam_iou"] == pytest.approx((1 + 0.5 + 0) / 3)
    # Mass shares: 4 / (4 + 4*0.5) = 2/3 and 4 / 6 = 2/3 again with the wider mask (its extra pixels
    # are dark); the label-1 map has no mass and is left out.
    assert test["cam_foreground_mass"] == pytest.approx(2 / 3)
    assert test["cam_empty_maps"] == 1
    assert out["variants"]["test_aligned"] == {"n_images": 2, "accuracy": 100.0}
    assert out["aligned_minus_random"] == pytest.approx(100 - 200 / 3)


def test_background_bias_metrics_validates_masks(identity_classifier: nn.Module) -> None:
    images = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"masks must be bool \[N, H, W\]"):
        background_bias_metrics(identity_classifier, {"test": (images, torch.tensor([0, 1]), torch.ones(2, 3, 3))}, 0.5)
    with pytest.raises(ValueError, match="cam_threshold"):
        background_bias_metrics(identity_classifier, {"test": (images, torch.tensor([0, 1]), None)}, 1.5)
