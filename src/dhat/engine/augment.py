"""Batched augmentation on tensors, applied identically to images and their masks."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["random_crop_flip"]


def random_crop_flip(
    images: torch.Tensor,
    masks: torch.Tensor | None = None,
    padding: int = 4,
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Zero-padded random crop and random horizontal flip, one draw per image.

    The same offsets and flips are applied to ``masks`` (``[B, H, W]`` or
    ``[B, 1, H, W]``), so a precomputed attention map keeps covering the pixels
    it was computed for. Runs on the tensors' device; no host round trip.

    Args:
        images: ``[B, C, H, W]``.
        masks: optional per-image maps with the same ``B, H, W``.
        padding: crop padding in pixels (0 disables cropping).
        flip: whether to flip each image left-right with probability 1/2.
        generator: random generator on the tensors' device (``None``: global RNG).
    """
    if padding < 0:
        raise ValueError(f"augmentation padding must be >= 0, got {padding}")
    batch, _, height, width = images.shape
    device = images.device
    mask_4d = None if masks is None else (masks if masks.ndim == 4 else masks.unsqueeze(1))
    if padding > 0:
        offsets = torch.randint(0, 2 * padding + 1, (2, batch), device=device, generator=generator)
        rows = (offsets[0][:, None] + torch.arange(height, device=device))[:, None, :, None]
        cols = (offsets[1][:, None] + torch.arange(width, device=device))[:, None, None, :]
        index = torch.arange(batch, device=device)[:, None, None, None]

        def crop(t: torch.Tensor) -> torch.Tensor:
            padded = F.pad(t, (padding, padding, padding, padding))
            channel = torch.arange(t.shape[1], device=device)[None, :, None, None]
            return padded[index, channel, rows, cols]

        images = crop(images)
        mask_4d = None if mask_4d is None else crop(mask_4d)
    if flip:
        flips = (torch.rand(batch, device=device, generator=generator) < 0.5).view(-1, 1, 1, 1)
        images = torch.where(flips, images.flip(3), images)
        mask_4d = None if mask_4d is None else torch.where(flips, mask_4d.flip(3), mask_4d)
    if mask_4d is None:
        return images, None
    return images, (mask_4d if masks is not None and masks.ndim == 4 else mask_4d.squeeze(1))
