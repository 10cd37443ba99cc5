"""How well a crop of a stored attention map stands in for Grad-CAM recomputed on the cropped image.

DHAT's masks are computed once per training image, on the whole image, and follow the image
through each batch's augmentation (:mod:`dhat.maps`). The reference code instead
recomputes Grad-CAM on every augmented batch: one extra forward and backward pass of the mask
model per image and step. With a random-resized crop of small area (ImageNet's 0.08) and a
coarse map (7x7 for a ResNet-18 on 224 px), the crop of the stored map is an upsampled patch of
one or two map cells, while a recomputed map sees the crop at full resolution. This module
measures the difference, crop scale by crop scale, on the same images and boxes:

- ``map_correlation``: mean over images of the Pearson correlation of the two maps;
- ``background_iou_quantile``: mean IoU of the background each marks under the quantile rule
  (``background_share``), DHAT's embedded default rule;
- ``background_iou_absolute``: the same under the paper's absolute rule (``omega``);
- ``mean_abs_difference``: mean absolute difference of the two maps (both in ``[0, 1]``);
- ``stored_ms_per_image`` / ``recomputed_ms_per_image``: the time each way adds per image and
  training step (the stored map's expansion and crop; the extra Grad-CAM pass).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pandas as pd
import torch

from dhat.attention.gradcam import grad_cam, grad_cam_raw, region_iou
from dhat.attention.masks import MaskRule, background_mask
from dhat.engine.augment import crop_resize, resized_crop_boxes
from dhat.maps import pixel_maps
from dhat.models import ImageClassifier

__all__ = ["crop_agreement"]


def _correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image Pearson correlation of two ``[N, H, W]`` maps; 1 where both are constant, 0 where only one is."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    norm = a.norm(dim=1) * b.norm(dim=1)
    both_flat = (a.norm(dim=1) == 0) & (b.norm(dim=1) == 0)
    return torch.where(norm > 0, (a * b).sum(1) / norm.clamp_min(1e-30), both_flat.double())


def crop_agreement(
    model: ImageClassifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    scales: Sequence[float] = (0.08, 0.25, 0.5, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    background_share: float = 0.5,
    omega: float = 0.1,
    batch_size: int = 128,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per crop area share in ``scales``: the stored-map crop against Grad-CAM of the cropped image.

    Args:
        model: the mask model (eval mode is set for the maps).
        images: float ``[N, C, H, W]`` in ``[0, 1]``; labels: ``[N]`` (Grad-CAM's target class).
        scales: crop area shares; each draws one box per image (aspect ratio in ``ratio``), the
            same boxes for both ways, from a generator seeded with ``seed`` and the scale's position.
        background_share, omega: the quantile and absolute rules the background IoUs use.
    """
    rows = []
    quantile, absolute = MaskRule("quantile", background_share=background_share), MaskRule("absolute", omega=omega)
    size = images.shape[-2:]
    for position, scale in enumerate(scales):
        generator = torch.Generator(device=images.device).manual_seed(seed * 1000 + position)
        sums = {"map_correlation": 0.0, "background_iou_quantile": 0.0, "background_iou_absolute": 0.0,
                "mean_abs_difference": 0.0}
        stored_time = recomputed_time = 0.0
        for start in range(0, images.shape[0], batch_size):
            x, y = images[start : start + batch_size], labels[start : start + batch_size]
            boxes = resized_crop_boxes(x.shape[0], *size, (scale, scale), ratio, generator, x.device)
            crops = crop_resize(x, boxes)
            raw = grad_cam_raw(model, x, y)  # stored once per image, before training
            began = time.perf_counter()
            # The stored way, per step: the raw map expanded as training expands it, then cropped with the image.
            stored = crop_resize(pixel_maps(raw, size).unsqueeze(1), boxes).squeeze(1)
            stored_time += time.perf_counter() - began
            began = time.perf_counter()
            recomputed = grad_cam(model, crops, y)  # the reference code's way: Grad-CAM of the augmented image
            recomputed_time += time.perf_counter() - began
            sums["map_correlation"] += float(_correlation(stored, recomputed).sum())
            for key, rule in (("background_iou_quantile", quantile), ("background_iou_absolute", absolute)):
                sums[key] += float(region_iou(background_mask(stored, rule), background_mask(recomputed, rule)).sum())
            sums["mean_abs_difference"] += float((stored - recomputed).abs().flatten(1).mean(1).sum())
        n = max(1, images.shape[0])
        rows.append({"crop_scale": float(scale), "n_images": int(images.shape[0]),
                     **{key: value / n for key, value in sums.items()},
                     "stored_ms_per_image": 1000 * stored_time / n, "recomputed_ms_per_image": 1000 * recomputed_time / n})
    return pd.DataFrame(rows)
