"""Where a data set's pixels live between pipeline stages: ``data.storage: auto | memory | stream``.

- ``memory``: every split decoded into one uint8 array, written to its ``.npz`` (the fastest
  path; on a GPU the whole training split sits on the device).
- ``stream``: the splits stay the user's image files. Ingestion writes an *index* (relative
  file names, labels, the resize, the listing digest) instead of pixels; training streams
  batches through a ``DataLoader`` (:mod:`dhat.data.loading`), and evaluation and the analyses
  decode the bounded subsets they score.
- ``auto`` (default): ``memory`` when the decoded splits take at most half of the memory the
  host has available now and, when the run trains on a GPU, at most half of the device's free
  memory (memory mode puts the training split on the device); else ``stream``. The choice and
  its reason are logged.

Only the ``image_folder`` source has files to stream; the others are arrays already.
:func:`image_set_to_arrays` and :func:`arrays_to_image_set` turn a streamed image set into
plain arrays and back, so the catalog stores its index like any other ``.npz`` (no pickle).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dhat.config import resolve_device
from dhat.data.external_masks import FileMasks
from dhat.data.files import FileImages

__all__ = ["STORAGE_MODES", "StorageChoice", "arrays_to_image_set", "available_memory_bytes", "check_storage", "choose_storage",
           "device_free_bytes", "image_set_to_arrays"]

logger = logging.getLogger(__name__)

STORAGE_MODES = ("auto", "memory", "stream")

#: Share of the host's available memory (and of a GPU's free memory) that memory mode may fill with decoded
#: images under ``auto``.
MEMORY_SHARE = 0.5

# Keys of a streamed image set's index in its .npz file.
_STORAGE, _ROOT, _FILES, _SIZE, _SHAPE, _DIGEST = ("storage", "root", "files", "image_size", "image_shape", "digest")
_INDEX_KEYS = (_STORAGE, _ROOT, _FILES, _SIZE, _SHAPE, _DIGEST)
# A per-sample array that stays in its files (FileMasks: external masks) is indexed as a group of these arrays.
_MASK_FILES = "mask_files"


def _masks_to_arrays(masks: FileMasks) -> dict[str, np.ndarray]:
    return {_STORAGE: np.array(_MASK_FILES), _ROOT: np.array(masks.root),
            _FILES: np.array([name.encode("utf-8") for name in masks.files], dtype=bytes),
            _SHAPE: np.array(masks.shape[1:], dtype=np.int64), "resize": np.array(masks.resize)}


def _arrays_to_masks(group: Mapping[str, Any]) -> FileMasks:
    return FileMasks(str(group[_ROOT]), [bytes(n).decode("utf-8") for n in np.asarray(group[_FILES])],
                     tuple(int(v) for v in np.asarray(group[_SHAPE])), bool(group["resize"]))


def _is_mask_index(value: Any) -> bool:
    return isinstance(value, Mapping) and str(value.get(_STORAGE, "")) == _MASK_FILES


def available_memory_bytes() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (``None`` where the file does not exist)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def device_free_bytes(device: str | torch.device) -> int | None:
    """Free memory of the CUDA device a run trains on (``device``: ``auto``, ``cuda:1``, ...); ``None`` for the CPU."""
    resolved = resolve_device(device) if isinstance(device, str) else device
    if resolved.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(resolved)
    return int(free)


@dataclass(frozen=True)
class StorageChoice:
    """The storage mode a run uses and why (for the log and ``dataset_info``)."""

    mode: str
    reason: str


def check_storage(requested: Any, source: str) -> None:
    """``data.storage`` names a mode, and ``stream`` only for a source of image files; else a ``ValueError`` naming it."""
    if requested not in STORAGE_MODES:
        raise ValueError(f"data.storage must be one of {', '.join(STORAGE_MODES)}, got {requested!r}")
    if requested == "stream" and source != "image_folder":
        raise ValueError(f"data.storage: stream needs image files (data.source: image_folder); the {source!r} "
                         "source's images are arrays already: set data.storage: memory (or auto)")


def choose_storage(requested: Any, source: str, decoded_bytes: int, available: int | None = None,
                   device_free: int | None = None) -> StorageChoice:
    """Resolve ``data.storage`` for a source whose splits would take ``decoded_bytes`` decoded.

    ``available`` is the host's available memory (read from ``/proc/meminfo`` when ``None``);
    ``device_free`` the free memory of the GPU the run trains on (``None``: a CPU run). ``auto``
    keeps memory mode only where the splits fit half of each.

    Raises:
        ValueError: naming ``data.storage`` for an unknown mode, or ``stream`` for a source
            that has no image files (every source but ``image_folder``).
    """
    check_storage(requested, source)
    size = f"{decoded_bytes / 2**30:.2f} GiB decoded"
    if source != "image_folder":
        return StorageChoice("memory", f"{source} data are arrays ({size})")
    if requested != "auto":
        return StorageChoice(requested, f"data.storage: {requested} ({size})")
    available = available_memory_bytes() if available is None else available
    if available is None:
        return StorageChoice("memory", f"{size}; the available memory is unknown, so memory mode (set data.storage)")
    limits = {f"the {available / 2**30:.1f} GiB available on the host": available}
    if device_free is not None:
        limits[f"the {device_free / 2**30:.1f} GiB free on the GPU"] = device_free
    over = [name for name, limit in limits.items() if decoded_bytes > MEMORY_SHARE * limit]
    if over:
        return StorageChoice("stream", f"{size}, over half of {' and of '.join(over)}")
    return StorageChoice("memory", f"{size}, within half of {' and of '.join(limits)}")


def image_set_to_arrays(image_set: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """An image set as arrays only: a streamed set's :class:`FileImages` become its index entries."""
    images = image_set.get("images")
    if not isinstance(images, FileImages):
        return dict(image_set)
    clash = set(_INDEX_KEYS) & set(image_set)
    if clash:
        raise ValueError(f"a streamed image set cannot hold keys named {sorted(clash)}")
    rest = {key: _masks_to_arrays(value) if isinstance(value, FileMasks) else value
            for key, value in image_set.items() if key != "images"}
    return {
        **rest,
        _STORAGE: np.array("stream"),
        _ROOT: np.array(images.root),
        _FILES: np.array([name.encode("utf-8") for name in images.files], dtype=bytes),
        _SIZE: np.array(-1 if images.image_size is None else int(images.image_size)),
        _SHAPE: np.array(images.shape[1:], dtype=np.int64),
        _DIGEST: np.array(images.digest()),
    }


def arrays_to_image_set(arrays: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`image_set_to_arrays`: an index becomes a set whose ``images`` are :class:`FileImages`."""
    if _STORAGE not in arrays:
        return dict(arrays)
    if str(arrays[_STORAGE]) != "stream":
        raise ValueError(f"unknown image-set storage {str(arrays[_STORAGE])!r} in the index; rerun data_ingestion")
    size = int(arrays[_SIZE])
    files = [bytes(name).decode("utf-8") for name in np.asarray(arrays[_FILES])]
    shape = tuple(int(v) for v in np.asarray(arrays[_SHAPE]))
    images = FileImages(str(arrays[_ROOT]), files, None if size < 0 else size, shape=shape)  # type: ignore[arg-type]
    rest = {key: _arrays_to_masks(value) if _is_mask_index(value) else value
            for key, value in arrays.items() if key not in _INDEX_KEYS}
    return {"images": images, **rest}
