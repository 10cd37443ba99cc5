"""Image sets as tensors on the compute device.

Image sets travel between pipeline stages as numpy arrays (``images`` uint8
``[N, H, W, C]``, ``labels``, optional ``masks`` uint8 ``[N, H, W]``). For
training and evaluation they move to the device once, stay uint8 there (4x less
memory than float; on the CPU the tensor is a view of the array, not a copy) and are
converted batch by batch. :func:`iterate_set` walks a set batch by batch without moving
all of it, for one-off passes over large sets.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dhat.maps import check_stored_maps, is_feature_maps, pixel_maps

__all__ = ["MATERIALISE_LIMIT_BYTES", "DeviceImageSet", "float_batch", "float_masks", "iterate_set", "labels_and_masks", "require_bounded", "to_device_set"]


#: Largest decoded size (bytes) of a streamed set that a step holds in memory at once (``np.asarray`` of its
#: :class:`dhat.data.files.FileImages`, or a subset it attacks as one tensor); above it an error names the fix.
MATERIALISE_LIMIT_BYTES = 4 * 2**30


@dataclass
class DeviceImageSet:
    """``images`` uint8 ``[N, C, H, W]``, ``labels`` int64 ``[N]``, optional uint8 ``masks`` ``[N, H, W]``."""

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None = None  # or float32 [N, h, w] feature-resolution Grad-CAM (dhat.maps)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def has_masks(self) -> bool:
        """Whether the set carries a mask per image."""
        return self.masks is not None

    @property
    def device(self) -> torch.device:
        """Where the images are (and every batch is made)."""
        return self.images.device

    def epoch_batches(self, batches: list[torch.Tensor], with_masks: bool
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """``(index, float images, float masks or None)`` for each index batch, in order (the training loop's feed).

        Stream-mode sets (:class:`dhat.data.loading.StreamImageSet`) yield the same values for
        the same batches, decoded from the files.
        """
        for whole in batches:
            yield whole, self.float_images(whole), self.float_masks(whole) if with_masks else None

    def float_images(self, index: torch.Tensor | slice | None = None) -> torch.Tensor:
        """Images (all, or ``index``) as contiguous NCHW float in ``[0, 1]``."""
        return float_batch(self.images if index is None else self.images[index])

    def float_masks(self, index: torch.Tensor | slice | None = None) -> torch.Tensor | None:
        """Masks (all, or ``index``) as float ``[B, H, W]`` in ``[0, 1]`` at the images' size, or ``None``."""
        return float_masks(self.masks, index, self.images.shape[-2:])


def float_masks(masks: torch.Tensor | None, index: torch.Tensor | slice | None = None,
                size: tuple[int, int] | torch.Size | None = None) -> torch.Tensor | None:
    """Stored masks (all, or ``index``) as float ``[B, H, W]`` in ``[0, 1]``, or ``None`` without masks.

    uint8 masks are pixel-level; float32 ones are feature-resolution Grad-CAM, expanded to ``size``
    (the images' height and width) on their device (:func:`dhat.maps.pixel_maps`).
    """
    if masks is None:
        return None
    selected = masks if index is None else masks[index]
    if size is None:
        if selected.dtype != torch.uint8:
            raise ValueError("feature-resolution maps need the images' size to expand to")
        size = selected.shape[-2:]
    return pixel_maps(selected, size)


def float_batch(images: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW images (any strides) as contiguous NCHW float in ``[0, 1]``: the one conversion every feed uses."""
    return images.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)


def to_device_set(
    image_set: Mapping[str, np.ndarray],
    device: torch.device | str,
    masks: np.ndarray | None = None,
    name: str = "image set",
    bound: str | None = None,
) -> DeviceImageSet:
    """Move an image set (numpy, NHWC uint8) to ``device`` as a :class:`DeviceImageSet`.

    Args:
        image_set: mapping with ``images`` and ``labels`` (and optionally ``masks``).
        device: target device.
        masks: attention maps to use instead of ``image_set["masks"]`` (uint8 ``[N, H, W]``, or float32
            feature-resolution Grad-CAM ``[N, h, w]``, see :mod:`dhat.maps`).
        name: dataset name for error messages.
        bound: the parameter that bounds how many images the set holds (``evaluation.n_eval``); a
            streamed set too large to hold in memory is refused with an error that names it.
    """
    for key in ("images", "labels"):
        if key not in image_set:
            raise ValueError(f"{name} has no {key!r} array; re-run the data_ingestion pipeline")
    if bound is not None and not isinstance(image_set["images"], np.ndarray):
        require_bounded(image_set["images"], name, bound)
    images = np.asarray(image_set["images"])
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"{name}: images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}")
    label_tensor, mask_tensor = labels_and_masks(image_set, images.shape, device, masks, name)
    # A view in NCHW order of the NHWC array (channels-last strides): no copy of the images on the CPU,
    # one copy onto an accelerator. Batches come out contiguous from float_images.
    image_tensor = torch.from_numpy(_writable(images)).permute(0, 3, 1, 2).to(device)
    return DeviceImageSet(images=image_tensor, labels=label_tensor, masks=mask_tensor)


def labels_and_masks(image_set: Mapping[str, np.ndarray], shape: tuple[int, ...], device: torch.device | str,
                     masks: np.ndarray | None = None, name: str = "image set") -> tuple[torch.Tensor, torch.Tensor | None]:
    """The set's labels (int64) and masks (``masks`` if given, else its own ``masks``; uint8 or ``None``) on ``device``,
    checked against the images' ``shape`` ``[N, H, W, C]``."""
    labels = np.asarray(image_set["labels"])
    if labels.shape != (shape[0],):
        raise ValueError(f"{name}: labels must have shape [{shape[0]}], got {labels.shape}")
    chosen = masks if masks is not None else image_set.get("masks")
    mask_tensor = None
    if chosen is not None:
        chosen = np.asarray(chosen)
        check_stored_maps(chosen, tuple(shape), name)
        kept = chosen if is_feature_maps(chosen) else chosen.astype(np.uint8, copy=False)
        mask_tensor = torch.from_numpy(_writable(kept)).to(device)
    return torch.from_numpy(labels.astype(np.int64)).to(device), mask_tensor


def _writable(array: np.ndarray) -> np.ndarray:
    """``array`` itself when torch can share it (C-contiguous and writable); a C-ordered copy otherwise."""
    if array.flags.c_contiguous and array.flags.writeable:
        return array
    return np.array(array, order="C", copy=True)


def iterate_set(
    image_set: Mapping[str, np.ndarray], device: torch.device | str, batch_size: int, name: str = "image set"
) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor]]:
    """``(start, end, images, labels)`` batches of a numpy image set, each moved to ``device`` on its own.

    For passes over a whole data set (attention maps, statistics) that must not hold a float
    copy of it: memory is one batch of float images, whatever the data size. ``images`` are
    float ``[B, C, H, W]`` in ``[0, 1]`` (contiguous), exactly the values :meth:`DeviceImageSet.float_images`
    gives for the same rows.
    """
    images = image_set["images"]
    # Arrays, or array-likes that decode the rows they are asked for (stream mode's FileImages): chunk by chunk.
    images = images if hasattr(images, "shape") and hasattr(images, "dtype") else np.asarray(images)
    labels = np.asarray(image_set["labels"])
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"{name}: images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    for start in range(0, images.shape[0], batch_size):
        end = min(start + batch_size, images.shape[0])
        chunk = torch.from_numpy(np.ascontiguousarray(images[start:end])).to(device).permute(0, 3, 1, 2)
        x = float_batch(chunk)
        yield start, end, x, torch.from_numpy(labels[start:end].astype(np.int64)).to(device)


def require_bounded(images: Any, name: str, bound: str) -> None:
    """Refuse to hold a streamed set of more than :data:`MATERIALISE_LIMIT_BYTES` in memory, naming ``bound``.

    Steps that attack or analyse a set as one tensor (the evaluation's subset, a sweep, the
    analyses, transfer, the tuning check) work on a fixed subset of the streamed split; this
    names the parameter that sets its size when it is unbounded or too large.
    """
    nbytes = int(getattr(images, "nbytes", 0))
    if nbytes > MATERIALISE_LIMIT_BYTES:
        raise ValueError(
            f"{name}: this step holds its {len(images):,} images in memory at once ({nbytes / 2**30:.1f} GiB as uint8, "
            f"4x that as float on the device), over the {MATERIALISE_LIMIT_BYTES / 2**30:.0f} GiB limit for a streamed "
            f"set; set {bound} to a bounded subset (e.g. 5000 images, RobustBench's ImageNet subset)"
        )
