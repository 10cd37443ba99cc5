"""Image sets as tensors on the compute device.

Image sets travel between pipeline stages as numpy arrays (``images`` uint8
``[N, H, W, C]``, ``labels``, optional ``masks`` uint8 ``[N, H, W]``). For
training and evaluation they move to the device once, stay uint8 there (4x less
memory than float) and are converted batch by batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["DeviceImageSet", "to_device_set"]


@dataclass
class DeviceImageSet:
    """``images`` uint8 ``[N, C, H, W]``, ``labels`` int64 ``[N]``, optional uint8 ``masks`` ``[N, H, W]``."""

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def float_images(self, index: torch.Tensor | slice | None = None) -> torch.Tensor:
        """Images (all, or ``index``) as float in ``[0, 1]``."""
        selected = self.images if index is None else self.images[index]
        return selected.float().div_(255.0)

    def float_masks(self, index: torch.Tensor | slice | None = None) -> torch.Tensor | None:
        """Masks (all, or ``index``) as float in ``[0, 1]``, or ``None``."""
        if self.masks is None:
            return None
        selected = self.masks if index is None else self.masks[index]
        return selected.float().div_(255.0)


def to_device_set(
    image_set: Mapping[str, np.ndarray],
    device: torch.device | str,
    masks: np.ndarray | None = None,
    name: str = "image set",
) -> DeviceImageSet:
    """Move an image set (numpy, NHWC uint8) to ``device`` as a :class:`DeviceImageSet`.

    Args:
        image_set: mapping with ``images`` and ``labels`` (and optionally ``masks``).
        device: target device.
        masks: attention maps to use instead of ``image_set["masks"]`` (uint8 ``[N, H, W]``).
        name: dataset name for error messages.
    """
    for key in ("images", "labels"):
        if key not in image_set:
            raise ValueError(f"{name} has no {key!r} array; re-run the data_ingestion pipeline")
    images = np.asarray(image_set["images"])
    labels = np.asarray(image_set["labels"])
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"{name}: images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"{name}: labels must have shape [{images.shape[0]}], got {labels.shape}")
    chosen_masks = masks if masks is not None else image_set.get("masks")
    mask_tensor = None
    if chosen_masks is not None:
        chosen_masks = np.asarray(chosen_masks)
        if chosen_masks.shape != images.shape[:3]:
            raise ValueError(f"{name}: masks must have shape {images.shape[:3]}, got {chosen_masks.shape}")
        mask_tensor = torch.from_numpy(np.ascontiguousarray(chosen_masks.astype(np.uint8))).to(device)
    image_tensor = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device)
    label_tensor = torch.from_numpy(labels.astype(np.int64)).to(device)
    return DeviceImageSet(images=image_tensor, labels=label_tensor, masks=mask_tensor)
