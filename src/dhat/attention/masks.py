"""DHAT's background masks: which pixels of an attention map count as background, and how well.

DHAT builds its background image ``x_bg = x_inv * 1[background]`` from an attention
map ``M`` in ``[0, 1]`` per training image (Grad-CAM of a natural model, or the data's
true foreground). Two threshold rules decide the background:

- ``absolute``: ``M < omega``, as in the paper and its reference code (omega = 0.1 on
  CIFAR). How much of the image this marks depends on the maps: on small images with
  a coarse Grad-CAM it can be a few percent, and then ``x_bg`` is nearly black.
- ``quantile``: in each image, the ``background_share`` of pixels with the lowest
  attention (ties broken by pixel position, so exactly ``round(share * H * W)`` pixels).

:func:`mask_statistics` measures what a rule does to a set of maps: the share of pixels
marked background (coverage) and, with true foreground masks, the IoU of the marked
background with the true background.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from dhat.attention.gradcam import region_iou
from dhat.maps import is_feature_maps, pixel_maps

__all__ = ["MASK_RULES", "MaskRule", "background_mask", "mask_statistics", "stored_mask_statistics", "LOW_COVERAGE"]

MASK_RULES = ("absolute", "quantile")
#: Coverage below which DHAT's background image is mostly black and the method degenerates to UIAT.
LOW_COVERAGE = 0.2


@dataclass(frozen=True)
class MaskRule:
    """A background threshold rule (see the module docstring); ``validate`` names bad fields."""

    rule: Literal["absolute", "quantile"] = "absolute"
    omega: float = 0.1
    background_share: float = 0.5

    def validate(self, section: str) -> MaskRule:
        if self.rule not in MASK_RULES:
            raise ValueError(f"{section}.mask_rule must be one of {', '.join(MASK_RULES)}, got {self.rule!r}")
        if not 0.0 <= float(self.omega) <= 1.0:
            raise ValueError(f"{section}.omega (attention threshold) must be in [0, 1], got {self.omega}")
        if not 0.0 <= float(self.background_share) <= 1.0:
            raise ValueError(f"{section}.background_share must be in [0, 1], got {self.background_share}")
        return self


def background_mask(maps: torch.Tensor, rule: MaskRule) -> torch.Tensor:
    """Boolean ``[N, H, W]``: True where ``rule`` calls the pixel background.

    Args:
        maps: attention maps in ``[0, 1]``, ``[N, H, W]`` (higher = more foreground).
        rule: the threshold rule.
    """
    if maps.ndim != 3:
        raise ValueError(f"maps must have shape [N, H, W], got {tuple(maps.shape)}")
    if rule.rule == "absolute":
        return maps < rule.omega
    n, height, width = maps.shape
    count = round(float(rule.background_share) * height * width)
    flat = maps.reshape(n, -1)
    order = torch.sort(flat, dim=1, stable=True).indices  # lowest attention first; ties by position
    background = torch.zeros_like(flat, dtype=torch.bool)
    background.scatter_(1, order[:, :count], True)
    return background.view(n, height, width)


def _per_image(maps: torch.Tensor, rule: MaskRule, true_foreground: torch.Tensor | None
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Per image: the share of pixels marked background, and with ``true_foreground`` the IoU of the marked
    background with the true background and the true background's share."""
    background = background_mask(maps, rule)
    coverage = background.flatten(1).float().mean(1)
    if true_foreground is None:
        return coverage, None, None
    if tuple(true_foreground.shape) != tuple(maps.shape):
        raise ValueError(f"true_foreground must have the maps' shape {tuple(maps.shape)}, got {tuple(true_foreground.shape)}")
    truth = ~true_foreground.bool()
    return coverage, region_iou(background, truth), truth.flatten(1).float().mean(1)


def _summary(coverage: torch.Tensor, iou: torch.Tensor | None, truth_share: torch.Tensor | None) -> dict[str, float | None]:
    empty = coverage.numel() == 0
    return {
        "coverage": 0.0 if empty else float(coverage.mean()),
        "coverage_min": 0.0 if empty else float(coverage.min()),
        "coverage_max": 0.0 if empty else float(coverage.max()),
        "iou_true_background": None if iou is None or empty else float(iou.mean()),
        "true_background_share": None if truth_share is None or empty else float(truth_share.mean()),
    }


def mask_statistics(
    maps: torch.Tensor, rule: MaskRule, true_foreground: torch.Tensor | None = None
) -> dict[str, float | None]:
    """What ``rule`` makes of ``maps``: ``coverage`` (mean share of pixels marked background),
    ``coverage_min`` / ``coverage_max`` over images and, with ``true_foreground`` (bool
    ``[N, H, W]``), ``iou_true_background`` (mean per-image IoU of the marked background with
    the true background; 1 where both are empty) and ``true_background_share`` (mean per image)."""
    return _summary(*_per_image(maps, rule, true_foreground))


def stored_mask_statistics(
    maps: np.ndarray, rule: MaskRule, true_masks: np.ndarray | None = None, chunk: int = 1024,
    image_size: tuple[int, int] | None = None,
) -> dict[str, float | None]:
    """:func:`mask_statistics` of stored maps and uint8 true masks (255 = foreground), ``chunk`` images at a time:
    the same numbers, without a float copy of the whole set.

    ``maps`` are uint8 (``round(255 * M)``) or float32 feature-resolution Grad-CAM, which is
    expanded to ``image_size`` (default: the true masks' size) chunk by chunk as training expands it
    (:func:`dhat.maps.pixel_maps`).
    """
    feature = is_feature_maps(maps)
    if feature and image_size is None:
        if true_masks is None:
            raise ValueError("feature-resolution maps need image_size (the training images' height and width)")
        image_size = tuple(np.shape(true_masks)[1:3])
    if true_masks is not None and (len(np.shape(true_masks)) != 3 or len(np.shape(true_masks)) != len(np.shape(maps))
                                   or np.shape(true_masks)[0] != np.shape(maps)[0]
                                   or (not feature and np.shape(true_masks) != np.shape(maps))):
        raise ValueError(f"true masks must have the maps' shape {np.shape(maps)}, got {np.shape(true_masks)}")
    n = len(maps)
    # Preallocated per-image arrays rather than a list of per-chunk tensors, which would fragment the heap.
    coverage = np.empty(n, np.float32)
    iou = None if true_masks is None else np.empty(n, np.float32)
    share = None if true_masks is None else np.empty(n, np.float32)
    for start in range(0, n, chunk):
        stored = torch.from_numpy(np.ascontiguousarray(maps[start : start + chunk]))
        block = pixel_maps(stored, image_size) if feature else stored.float() / 255.0
        truth = None if true_masks is None else torch.from_numpy(np.asarray(true_masks[start : start + chunk]) >= 128)
        part = _per_image(block, rule, truth)
        end = start + block.shape[0]
        coverage[start:end] = part[0].numpy()
        if iou is not None and share is not None:
            iou[start:end], share[start:end] = part[1].numpy(), part[2].numpy()  # type: ignore[union-attr]
    return _summary(torch.from_numpy(coverage), None if iou is None else torch.from_numpy(iou),
                    None if share is None else torch.from_numpy(share))
