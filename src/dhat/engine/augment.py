"""Batched augmentation on tensors, applied identically to images and their masks.

``training.augment`` picks the recipe: ``crop_flip`` (zero-padded random crop and flip, the
CIFAR recipe) or ``resized_crop`` (random-resized crop and flip, the ImageNet recipe). Both run
on the device in the training process, drawing from the training loop's own generator, so a
run's augmentation is the same whether its images come from memory or stream from files, and
whatever the number of loader workers.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F

__all__ = ["AUGMENTATIONS", "augment_batch", "crop_resize", "random_crop_flip", "random_resized_crop_flip",
           "resized_crop_boxes"]

#: ``training.augment`` choices.
AUGMENTATIONS = ("crop_flip", "resized_crop")


class AugmentSettings(Protocol):
    """The recipe fields augmentation reads (:class:`dhat.engine.recipe.TrainingConfig` has them)."""

    augment: str
    crop_padding: int
    flip: bool
    resized_crop_scale: tuple[float, float]
    resized_crop_ratio: tuple[float, float]


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


def resized_crop_boxes(
    batch: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
    generator: torch.Generator | None = None, device: torch.device | str = "cpu", attempts: int = 10,
) -> torch.Tensor:
    """Random-resized-crop boxes ``[B, 4]`` as ``(top, left, crop height, crop width)`` in whole pixels.

    torchvision's ``RandomResizedCrop`` rule, drawn for the whole batch at once: up to
    ``attempts`` tries of an area share in ``scale`` and a log-uniform aspect ratio in ``ratio``;
    the first box that fits the image wins, placed uniformly; an image with no fitting try gets
    the central crop of the largest box whose ratio is clamped into ``ratio``.
    """
    area = float(height * width)
    shares = torch.rand(attempts, batch, device=device, generator=generator) * (scale[1] - scale[0]) + scale[0]
    logs = torch.rand(attempts, batch, device=device, generator=generator)
    aspect = torch.exp(logs * (math.log(ratio[1]) - math.log(ratio[0])) + math.log(ratio[0]))
    w = torch.sqrt(area * shares * aspect).round()
    h = torch.sqrt(area * shares / aspect).round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.where(fits.any(0), fits.int().argmax(0), torch.full((batch,), -1, device=device))
    # Fallback: the whole image, its ratio clamped into the allowed range, centred.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        fw, fh = int(round(height * ratio[1])), height
    else:
        fw, fh = width, height
    pick = first.clamp_min(0).view(1, -1)
    crop_w = torch.where(first >= 0, w.gather(0, pick)[0], torch.full_like(w[0], fw)).long()
    crop_h = torch.where(first >= 0, h.gather(0, pick)[0], torch.full_like(h[0], fh)).long()
    places = torch.rand(2, batch, device=device, generator=generator)
    top = torch.where(first >= 0, (places[0] * (height - crop_h + 1)).floor().long(), torch.full_like(crop_h, (height - fh) // 2))
    left = torch.where(first >= 0, (places[1] * (width - crop_w + 1)).floor().long(), torch.full_like(crop_w, (width - fw) // 2))
    return torch.stack([top.clamp(0, height - 1), left.clamp(0, width - 1), crop_h, crop_w], dim=1)


def crop_resize(images: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor | None = None) -> torch.Tensor:
    """Each image's box (``[B, 4]``: top, left, height, width) resized bilinearly to the image's own size.

    One ``grid_sample`` for the batch: output pixel ``u`` reads the source point
    ``left + (u + 0.5) * width / W - 0.5`` (pixel centres, as ``F.interpolate`` with
    ``align_corners=False``), mirrored inside the box where ``flips`` is set. Inside the box this
    is torchvision's ``resized_crop`` without antialiasing (never needed: a box is at most the
    image); on the box's outermost row and column the bilinear weights reach the pixel just
    outside the box (the image's own neighbour; the image's edge pixel beyond its border), where
    torchvision, cropping first, repeats the box's edge pixel.
    """
    batch, _, height, width = images.shape
    boxes = boxes.to(images.dtype if images.is_floating_point() else torch.float32)
    top, left, crop_h, crop_w = boxes.unbind(1)
    theta = images.new_zeros((batch, 2, 3), dtype=boxes.dtype)
    sign = 1.0 if flips is None else 1.0 - 2.0 * flips.to(boxes.dtype)
    theta[:, 0, 0] = sign * crop_w / width
    theta[:, 0, 2] = (2 * left + crop_w) / width - 1
    theta[:, 1, 1] = crop_h / height
    theta[:, 1, 2] = (2 * top + crop_h) / height - 1
    grid = F.affine_grid(theta, [batch, 1, height, width], align_corners=False)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def random_resized_crop_flip(
    images: torch.Tensor,
    masks: torch.Tensor | None = None,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """ImageNet-style augmentation on the device: a random-resized crop (:func:`resized_crop_boxes`) back to the
    image's size and a random horizontal flip, one draw per image, the same for ``masks`` (``[B, H, W]``).

    Masks (attention maps in ``[0, 1]``) are resampled bilinearly like the images, so a
    thresholded map covers the pixels it was computed for.
    """
    batch, _, height, width = images.shape
    boxes = resized_crop_boxes(batch, height, width, scale, ratio, generator, images.device)
    flips = (torch.rand(batch, device=images.device, generator=generator) < 0.5) if flip else None
    out = crop_resize(images, boxes, flips)
    if masks is None:
        return out, None
    cropped = crop_resize(masks.unsqueeze(1) if masks.ndim == 3 else masks, boxes, flips)
    return out, (cropped.squeeze(1) if masks.ndim == 3 else cropped)


def augment_batch(images: torch.Tensor, masks: torch.Tensor | None, config: AugmentSettings,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The training recipe's augmentation (``training.augment``) of one batch and its masks."""
    if config.augment == "resized_crop":
        return random_resized_crop_flip(images, masks, config.resized_crop_scale, config.resized_crop_ratio,
                                        config.flip, generator)
    return random_crop_flip(images, masks, padding=config.crop_padding, flip=config.flip, generator=generator)
