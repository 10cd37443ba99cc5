"""Stored attention maps, at the image's resolution or at the attention map's own; their quantisation and expansion.

Plain torch and numpy (the data layer and the training feed use it); Grad-CAM itself is
:mod:`dhat.attention.gradcam`.

A mask-needing method (DHAT) trains with one map per training image. Two storage forms:

- **pixel** maps: uint8 ``[N, H, W]``, ``round(255 * M)`` of the image-resolution map ``M`` in
  ``[0, 1]`` (Grad-CAM upsampled and normalised, true masks, Integrated Gradients, external
  files). ``N x H x W`` bytes: 64 GB for ImageNet-1K at 224 px.
- **feature** maps (``mask_model.map_resolution: feature``, Grad-CAM only): float32
  ``[N, h, w]``, the raw Grad-CAM at the mask model's last feature map (4x4 for a ResNet-18
  on 32 px images, 7x7 on 224 px), before upsampling and normalisation. 250 MB for
  ImageNet-1K. A batch is expanded on the device when it is used: upsampled, normalised and
  rounded to 1/255 exactly as the pixel form was stored, so both forms give a method the
  same float maps, and the batch's crop and flip then apply to them as to the images.

The dtype tells the forms apart: uint8 is pixel-level, float32 is feature-resolution.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["MAP_RESOLUTIONS", "check_stored_maps", "dequantize_masks", "expand_cam", "is_feature_maps", "pixel_maps",
           "pixel_maps_uint8", "quantize_masks"]

#: ``mask_model.map_resolution``: store maps at the image's resolution or at the feature map's.
MAP_RESOLUTIONS = ("image", "feature")


def expand_cam(raw: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Feature-resolution Grad-CAM ``[B, h, w]`` -> the image-resolution map ``[B, H, W]`` in ``[0, 1]``.

    Bilinear upsampling to ``size`` (``align_corners=False``), then per-image min-max
    normalisation; a constant map becomes all zeros. Per image, so a batch of maps expands to
    exactly the values each map gets alone.
    """
    cam = F.interpolate(raw.float().unsqueeze(1), size=tuple(size), mode="bilinear", align_corners=False).squeeze(1)
    flat = cam.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1)
    span = (flat.max(dim=1).values.view(-1, 1, 1) - low).clamp_min(1e-12)
    return ((cam - low) / span).clamp_(0.0, 1.0)


def quantize_masks(maps: torch.Tensor) -> torch.Tensor:
    """Store ``[0, 1]`` maps as uint8 (1/255 resolution: 4x smaller than float32)."""
    return (maps.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def dequantize_masks(maps: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`quantize_masks`."""
    return maps.float() / 255.0


def is_feature_maps(maps: np.ndarray | torch.Tensor) -> bool:
    """Whether ``maps`` are feature-resolution Grad-CAM (float32) rather than pixel-level uint8 maps."""
    return maps.dtype in (np.float32, torch.float32)


def check_stored_maps(maps: np.ndarray, image_shape: tuple[int, ...], name: str) -> None:
    """Refuse maps that do not fit images of ``image_shape`` (``[N, H, W, ...]``), naming ``name`` and the fix."""
    n, height, width = image_shape[:3]
    shape = tuple(np.shape(maps))
    if is_feature_maps(maps):
        if len(shape) != 3 or shape[0] != n or shape[1] > height or shape[2] > width:
            raise ValueError(f"{name}: feature-resolution maps must be float32 [{n}, h, w] with h <= {height} and "
                             f"w <= {width}, got {shape}; rerun mask_precomputation for these images")
        return
    if np.asarray(maps).dtype != np.uint8 or shape != (n, height, width):
        raise ValueError(f"{name}: masks must be uint8 with shape {(n, height, width)} (or float32 feature-resolution "
                         f"maps [{n}, h, w]), got {np.asarray(maps).dtype} {shape}; rerun mask_precomputation")


def pixel_maps(maps: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Float ``[B, H, W]`` maps in ``[0, 1]`` at ``size`` from stored maps of either form (on their device).

    Pixel-level uint8 maps are divided by 255; feature-resolution maps are expanded
    (:func:`expand_cam`) and rounded to 1/255, the values the pixel
    form stores for the same map.
    """
    if is_feature_maps(maps):
        return dequantize_masks(quantize_masks(expand_cam(maps, size)))
    return maps.float().div_(255.0)


def pixel_maps_uint8(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Stored maps of either form as pixel-level uint8 ``[N, H, W]`` at ``size`` (for a bounded subset: a figure, a chunk)."""
    if not is_feature_maps(maps):
        return np.asarray(maps)
    return quantize_masks(expand_cam(torch.from_numpy(np.ascontiguousarray(maps)), size)).numpy()
