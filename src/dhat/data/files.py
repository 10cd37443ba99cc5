"""Images that stay in the user's files: one decoder, and an array-like that decodes rows on demand.

Memory mode decodes a whole split into one uint8 array (:func:`dhat.data.sources.read_images`);
stream mode keeps a :class:`FileImages` instead: the file list of a split, the resize and the
shape, which decodes only the rows it is asked for. Both decode through :func:`decode_image`,
so a row of a :class:`FileImages` equals the same row of the decoded array, bit for bit.

The listing's :func:`listing_digest` names the files (relative paths and sizes, in order) and
the resize, so that a resumable training state or a cached result can tell whether the data
behind an index changed without reading every pixel.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from dhat import tensors

__all__ = ["FileImages", "decode_image", "listing_digest"]


#: Rows from which a read decodes in a thread pool.
_POOL_FROM = 32


def decode_image(path: str | os.PathLike[str], image_size: int | None) -> np.ndarray:
    """One image file as uint8 ``[H, W, 3]`` RGB, resized (bilinear, PIL) to ``image_size`` squared if given."""
    from PIL import Image  # noqa: PLC0415 - imported lazily: only image folders need Pillow

    with Image.open(path) as img:
        rgb = img.convert("RGB")
        if image_size is not None and rgb.size != (image_size, image_size):
            rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
        return np.array(rgb, dtype=np.uint8)  # a writable copy: torch shares it without a warning


def listing_digest(relative_files: Sequence[str], sizes: Sequence[int], image_size: int | str | None) -> str:
    """SHA-256 of the ordered ``relative/path<TAB>bytes`` lines and the resize.

    Moving the folder keeps the digest (paths are relative); adding, removing, renaming or
    re-encoding a file to another size, or another ``image_size``, changes it. An edit that
    keeps a file's byte count is not seen (a name-and-size digest, like rsync's quick check).
    """
    if len(relative_files) != len(sizes):
        raise ValueError(f"{len(relative_files)} files but {len(sizes)} sizes")
    sha = hashlib.sha256(f"image_size={image_size}\n".encode())
    for name, size in zip(relative_files, sizes, strict=True):
        sha.update(f"{name}\t{int(size)}\n".encode())
    return sha.hexdigest()


class FileImages:
    """A split's images as uint8 ``[N, H, W, 3]`` that are decoded when indexed.

    ``images[i]`` (an int) is one ``[H, W, 3]`` image; a slice, a list or an integer array gives
    ``[k, H, W, 3]`` in that order. ``shape``, ``dtype``, ``ndim`` and ``len`` answer without
    decoding anything but the first file (which fixes ``H, W``). Instances hold only strings and
    integers, so they pickle cheaply into data-loader worker processes.

    Args:
        root: the folder the relative file names start from.
        files: relative POSIX paths of the images, in split order.
        image_size: resize every image to ``image_size`` squared (``None``: every file must
            already have the first one's size; a mismatch raises when that file is decoded).
        shape: ``(H, W, 3)`` if known (skips decoding the first file).
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, root: str | os.PathLike[str], files: Sequence[str], image_size: int | None,
                 shape: tuple[int, int, int] | None = None) -> None:
        self.root = str(root)
        self.files = [str(f) for f in files]
        self.image_size = image_size
        if shape is None:
            if not self.files:
                raise ValueError(f"no image files under {self.root} to index")
            shape = tuple(decode_image(self.path(0), image_size).shape)
        self._shape = (int(shape[0]), int(shape[1]), int(shape[2]))

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.files), *self._shape)

    @property
    def nbytes(self) -> int:
        """Bytes the decoded images would take."""
        return int(np.prod(self.shape, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.files)

    def path(self, row: int) -> Path:
        """The file of row ``row``."""
        return Path(self.root) / self.files[row]

    def decode(self, row: int) -> np.ndarray:
        """Row ``row`` as uint8 ``[H, W, 3]``; a ``ValueError`` naming the file and ``data.image_size`` if its size differs."""
        image = decode_image(self.path(row), self.image_size)
        if image.shape != self._shape:
            raise ValueError(
                f"{self.path(row)} decodes to {image.shape[1]}x{image.shape[0]} but the split's images are "
                f"{self._shape[1]}x{self._shape[0]}; set data.image_size to resize every image to one size"
            )
        return image

    def rows(self, index: Any) -> np.ndarray:
        """The row numbers ``index`` (slice, int array, list, bool mask) selects, in order."""
        if isinstance(index, slice):
            return np.arange(len(self))[index]
        rows = np.asarray(index)
        if rows.dtype == bool:
            if rows.shape != (len(self),):
                raise IndexError(f"boolean index of shape {rows.shape} for {len(self)} images")
            return np.flatnonzero(rows)
        if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
            raise IndexError(f"index images with an int, a slice or a 1-D integer array, not {rows.dtype} {rows.shape}")
        rows = np.where(rows < 0, rows + len(self), rows)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"image index out of range for {len(self)} images")
        return rows

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            row = int(index) + (len(self) if index < 0 else 0)
            if not 0 <= row < len(self):
                raise IndexError(f"image {index} out of range for {len(self)} images")
            return self.decode(row)
        rows = self.rows(index)
        out = np.empty((len(rows), *self._shape), dtype=np.uint8)
        if len(rows) < _POOL_FROM:
            for i, row in enumerate(rows):
                out[i] = self.decode(int(row))
            return out
        # PIL releases the GIL while it decodes: threads share the work without copying pixels between processes.
        with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
            for i, image in enumerate(pool.map(self.decode, (int(r) for r in rows))):
                out[i] = image
        return out

    def subset(self, index: Any) -> FileImages:
        """The rows ``index`` selects as another :class:`FileImages` (nothing decoded)."""
        return FileImages(self.root, [self.files[int(r)] for r in self.rows(index)], self.image_size, self._shape)

    def digest(self) -> str:
        """:func:`listing_digest` of these files (their sizes read from disk now) and this resize."""
        return listing_digest(self.files, [self.path(i).stat().st_size for i in range(len(self))], self.image_size)


    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if self.nbytes > tensors.MATERIALISE_LIMIT_BYTES:
            raise MemoryError(
                f"decoding all {len(self)} images of {self.root} would take {self.nbytes / 2**30:.1f} GiB; this step "
                "needs them in memory. Stream them (data.storage: stream) through a loader, or work on a bounded subset"
            )
        array = self[:]
        return array if dtype is None else array.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"FileImages({self.root!r}, {len(self)} files, image_size={self.image_size}, shape={self.shape})"
