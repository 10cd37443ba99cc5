"""``mask_precomputation`` on an in-memory catalog."""

from __future__ import annotations

import numpy as np
import torch

from dhat.attention.gradcam import dequantize_masks, foreground_iou, grad_cam_batched
from dhat.checkpoints import load_classifier
from dhat.tensors import to_device_set


def test_masks_are_the_mask_models_grad_cam_of_every_training_image(params, ingested, masks):
    train = ingested["train_set"]
    stored = masks["attention_masks"]["masks"]
    assert stored.shape == train["images"].shape[:3] and stored.dtype == np.uint8
    assert len(masks["mask_model_history"]) == params["mask_model"]["training"]["epochs"]
    # Recompute a few maps from the saved reference model: they must match the stored ones (uint8 rounding).
    model = load_classifier(masks["mask_model"])
    data = to_device_set({k: v[:8] for k, v in train.items()}, "cpu")
    maps = grad_cam_batched(model, data.float_images(), data.labels, batch_size=8)
    np.testing.assert_allclose(dequantize_masks(torch.from_numpy(stored[:8])).numpy(), maps.numpy(), atol=0.5 / 255 + 1e-6)


def test_mask_quality_is_the_iou_with_the_true_digits(ingested, masks):
    truth = torch.from_numpy(ingested["train_set"]["masks"] >= 128)
    maps = dequantize_masks(torch.from_numpy(masks["attention_masks"]["masks"]))
    quality = masks["mask_quality"]
    # Stored maps are rounded to uint8; the quality was measured before rounding, so allow a hair of slack.
    expected = foreground_iou(maps, truth, 0.5).mean().item()
    assert abs(quality["iou_true_foreground@0.5"] - expected) < 0.02
    assert quality["n_images"] == truth.shape[0]
