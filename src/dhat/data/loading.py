"""Batches of images decoded from their files by a torch ``DataLoader``, in an order the caller draws.

Stream mode feeds training through this module. The batch order is not the loader's: the
training loop draws each epoch's index batches from its own generator exactly as in memory
mode and hands them to :class:`FixedBatches`; the loader's worker processes only decode those
rows (:class:`DecodeDataset`) while the device works on the previous batches, and the
on-device crop and flip stay where they are. So, with the same seed, a stream-mode run sees
the same pixels in the same order as a memory-mode run, whatever the number of workers.

The loader gets an explicit generator: without one, every ``iter(loader)`` draws its worker
seed from torch's global random state, which the attacks' random starts also draw from, and
a stream-mode run would drift away from its memory-mode twin.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dhat.data.external_masks import FileMasks
from dhat.data.files import FileImages
from dhat.tensors import DeviceImageSet, float_batch, float_masks, labels_and_masks, to_device_set

__all__ = ["DecodeDataset", "FixedBatches", "LoaderSettings", "StreamImageSet", "batch_loader", "default_workers",
           "to_training_set", "TrainingSet"]


class DecodeDataset(Dataset):
    """Row ``i`` of a :class:`~dhat.data.files.FileImages` as a uint8 ``[H, W, 3]`` tensor (picklable: spawn-safe);
    with ``masks`` (:class:`~dhat.data.files.FileMasks`), the pair (image, its uint8 ``[H, W]`` mask)."""

    def __init__(self, images: FileImages, masks: FileMasks | None = None) -> None:
        self.images = images
        self.masks = masks

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, row: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(self.images.decode(int(row)))
        return image if self.masks is None else (image, torch.from_numpy(self.masks.decode(int(row))))


def stack_rows(rows: list[Any]) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """The loader's collate: one stacked tensor, or one per part of (image, mask) rows."""
    if isinstance(rows[0], tuple):
        return tuple(torch.stack(part) for part in zip(*rows, strict=True))
    return torch.stack(rows)


class FixedBatches(Sampler[list[int]]):
    """Yields the batches it was last given (:meth:`set_batches`), in order: the epoch's order, drawn elsewhere.

    The sampler runs in the main process, so a loader with persistent workers picks up the
    next epoch's batches at its next ``iter()``.
    """

    def __init__(self, batches: Sequence[Sequence[int]] = ()) -> None:
        self.batches: list[list[int]] = []
        self.set_batches(batches)

    def set_batches(self, batches: Sequence[Sequence[int]] | Sequence[torch.Tensor]) -> None:
        """The batches (index lists or tensors, any device) the next iteration yields."""
        self.batches = [np.asarray(b.cpu() if isinstance(b, torch.Tensor) else b, dtype=np.int64).tolist()
                        for b in batches]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def default_workers() -> int:
    """Decoding processes when ``training.loader_workers`` is ``auto``: the CPUs less one for the main process, at most 8."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


@dataclass(frozen=True)
class LoaderSettings:
    """``workers`` decoding processes (0: decode in the main process), ``prefetch`` batches queued per worker."""

    workers: int = 0
    prefetch: int = 2
    start_method: str = "spawn"

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ValueError(f"training.loader_workers must be 'auto' or an integer >= 0, got {self.workers!r}")
        if isinstance(self.prefetch, bool) or not isinstance(self.prefetch, int) or self.prefetch < 1:
            raise ValueError(f"training.loader_prefetch must be an integer >= 1, got {self.prefetch!r}")


def batch_loader(images: FileImages, settings: LoaderSettings, seed: int, pin_memory: bool = False,
                 masks: FileMasks | None = None) -> tuple[DataLoader, FixedBatches]:
    """A loader of uint8 ``[B, H, W, 3]`` batches of ``images`` (with ``masks``: pairs of them and their uint8
    ``[B, H, W]`` masks) and the sampler that sets its batches.

    Call ``sampler.set_batches(batches)`` before each ``iter(loader)``. Workers persist across
    epochs; the loader's own generator (seeded with ``seed``) leaves torch's global random
    state untouched.
    """
    sampler = FixedBatches()
    multi = settings.workers > 0
    loader = DataLoader(
        DecodeDataset(images, masks), batch_sampler=sampler, num_workers=settings.workers, collate_fn=stack_rows,
        pin_memory=pin_memory, prefetch_factor=settings.prefetch if multi else None, persistent_workers=multi,
        multiprocessing_context=settings.start_method if multi else None,
        generator=torch.Generator().manual_seed(int(seed)),
    )
    return loader, sampler


def _host_rows(index: torch.Tensor | slice | None) -> Any:
    """A row selection the files can be indexed with: all rows, a slice, or the index's values on the host."""
    if index is None:
        return slice(None)
    return index.cpu().numpy() if isinstance(index, torch.Tensor) else index


@dataclass
class StreamImageSet:
    """A training or validation split whose images stay in their files: the stream-mode twin of
    :class:`dhat.tensors.DeviceImageSet`.

    Labels and (uint8 or feature-resolution) masks live on the device; images, and per-image mask
    files (``mask_files``, external masks in stream mode), are decoded per batch. Training
    iterates :meth:`epoch_batches` (a loader decodes ahead in worker processes); one-off
    reads (validation batches, a method's per-class check) use :meth:`float_images`, which
    decodes in the calling process. Both give exactly the floats the memory-mode set gives
    for the same rows.
    """

    files: FileImages
    labels: torch.Tensor
    masks: torch.Tensor | None = None
    loader: LoaderSettings = field(default_factory=LoaderSettings)
    seed: int = 0
    mask_files: FileMasks | None = None
    _feed: tuple[DataLoader, FixedBatches] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def has_masks(self) -> bool:
        """Whether the set carries a mask per image (on the device, or in per-image files)."""
        return self.masks is not None or self.mask_files is not None

    @property
    def device(self) -> torch.device:
        return self.labels.device

    def _to_device(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC (host) -> float NCHW on the device, the memory-mode conversion."""
        return float_batch(images.to(self.device, non_blocking=True).permute(0, 3, 1, 2))

    def float_images(self, index: torch.Tensor | slice | None = None) -> torch.Tensor:
        """Images (all, or ``index``) decoded here, as contiguous NCHW float in ``[0, 1]``."""
        rows = _host_rows(index)
        return self._to_device(torch.from_numpy(self.files[rows]))

    def float_masks(self, index: torch.Tensor | slice | None = None) -> torch.Tensor | None:
        if self.mask_files is not None:
            rows = _host_rows(index)
            return float_masks(torch.from_numpy(self.mask_files[rows]).to(self.device))
        return float_masks(self.masks, index, self.files.shape[1:3])

    def epoch_batches(self, batches: list[torch.Tensor], with_masks: bool
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """``(index, float images, float masks or None)`` per batch, in the given order, decoded ahead by the loader."""
        if self._feed is None:
            self._feed = batch_loader(self.files, self.loader, self.seed, pin_memory=self.device.type == "cuda",
                                      masks=self.mask_files)
        loader, sampler = self._feed
        sampler.set_batches(batches)
        for whole, batch in zip(batches, loader, strict=True):
            if self.mask_files is not None:  # read in the workers beside the images
                images, masks = batch
                yield whole, self._to_device(images), float_masks(masks.to(self.device)) if with_masks else None
            else:
                yield whole, self._to_device(batch), self.float_masks(whole) if with_masks else None

    def close(self) -> None:
        """Stop the loader's worker processes (they also stop when the set is garbage-collected)."""
        self._feed = None


#: What the training loop and the validation read: a set in memory on the device, or one streamed from files.
TrainingSet = DeviceImageSet | StreamImageSet


def to_training_set(image_set: Mapping[str, Any], device: torch.device | str, masks: np.ndarray | None = None,
                    name: str = "image set", loader: LoaderSettings | None = None, seed: int = 0,
                    ) -> DeviceImageSet | StreamImageSet:
    """An image set on ``device``: a :class:`DeviceImageSet` when its images are an array (memory mode), a
    :class:`StreamImageSet` when they are :class:`~dhat.data.files.FileImages` (stream mode)."""
    images = image_set.get("images")
    if not isinstance(images, FileImages):
        return to_device_set(image_set, device, masks=None if masks is None else np.asarray(masks), name=name)
    if isinstance(masks, FileMasks):  # per-image mask files: read per batch, beside the images
        if masks.shape != images.shape[:3]:
            raise ValueError(f"{name}: masks must have shape {tuple(images.shape[:3])}, got {masks.shape}")
        label_tensor, _ = labels_and_masks({"labels": image_set["labels"]}, images.shape, device, None, name)
        return StreamImageSet(images, label_tensor, None, loader or LoaderSettings(), seed, mask_files=masks)
    label_tensor, mask_tensor = labels_and_masks(image_set, images.shape, device, masks, name)
    return StreamImageSet(images, label_tensor, mask_tensor, loader or LoaderSettings(), seed)
