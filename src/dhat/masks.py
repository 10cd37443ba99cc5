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

import torch

from dhat.attention import region_iou

__all__ = ["MASK_RULES", "MaskRule", "background_mask", "mask_statistics", "LOW_COVERAGE"]

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


def mask_statistics(
    maps: torch.Tensor, rule: MaskRule, true_foreground: torch.Tensor | None = None
) -> dict[str, float | None]:
    """What ``rule`` makes of ``maps``: ``coverage`` (mean share of pixels marked background),
    ``coverage_min`` / ``coverage_max`` over images and, with ``true_foreground`` (bool
    ``[N, H, W]``), ``iou_true_background`` (mean per-image IoU of the marked background with
    the true background; 1 where both are empty) and ``true_background_share``."""
    background = background_mask(maps, rule)
    per_image = background.flatten(1).float().mean(1)
    stats: dict[str, float | None] = {
        "coverage": float(per_image.mean()) if per_image.numel() else 0.0,
        "coverage_min": float(per_image.min()) if per_image.numel() else 0.0,
        "coverage_max": float(per_image.max()) if per_image.numel() else 0.0,
        "iou_true_background": None,
        "true_background_share": None,
    }
    if true_foreground is not None:
        if tuple(true_foreground.shape) != tuple(maps.shape):
            raise ValueError(f"true_foreground must have the maps' shape {tuple(maps.shape)}, got {tuple(true_foreground.shape)}")
        truth = ~true_foreground.bool()
        iou = region_iou(background, truth)
        stats["iou_true_background"] = float(iou.mean()) if iou.numel() else None
        stats["true_background_share"] = float(truth.flatten(1).float().mean()) if truth.numel() else None
    return stats
