"""Per-image masks computed outside the project (a segmenter such as SAM or SOLO), for DHAT's background.

``data.external_masks`` names them in one of two layouts:

- **a folder of files mirroring the image folder**: the mask of
  ``<data.root>/train/<class>/<name>.jpg`` is ``<external_masks>/train/<class>/<name>.png``
  (or ``.npy``). Only image-folder sources have files to mirror.
- **one array file** (``.npy``, or ``.npz`` with a ``masks`` array) holding one mask per
  image of the source's training pool, in the source's order: the sorted listing of
  ``<root>/train`` for an image folder, torchvision's order for CIFAR, the generated
  training split for the embedded data. An ``.npz`` may add a ``files`` array of the
  images' paths relative to ``data.root`` (``train/cat/0001.jpg``); then masks are matched
  to images by path and any image without a mask is an error.

A mask is a 2-D map where higher means foreground: boolean, integers 0/1, uint8 0..255
or floats in [0, 1]; it is stored as uint8 with 255 = foreground, like the Grad-CAM maps.
Masks are resized (bilinear) like their images when ``data.image_size`` resizes them;
otherwise each must have its image's size. Files load without running code (PIL, or
numpy with ``allow_pickle=False``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dhat.data.files import FileImages, listing_digest
from dhat.tensors import MATERIALISE_LIMIT_BYTES

__all__ = ["EXTERNAL_MASKS_KEY", "MASK_FILE_SUFFIXES", "FileMasks", "as_mask", "read_mask_array", "read_mask_file", "read_mask_files"]

logger = logging.getLogger(__name__)

#: Per-sample key of the training set that holds the external masks (uint8 ``[N, H, W]``, 255 = foreground).
EXTERNAL_MASKS_KEY = "external_masks"

#: Suffixes of per-image mask files, in the order they are looked for.
MASK_FILE_SUFFIXES = (".png", ".npy", ".bmp", ".tif", ".tiff")

_MAX_LISTED = 5


def as_mask(array: np.ndarray, where: str) -> np.ndarray:
    """``array`` (``[H, W]`` or ``[N, H, W]``) as uint8 with 255 = foreground.

    Booleans and integer 0/1 masks become 0/255, uint8-range integers stay as they are,
    floats must lie in [0, 1] and are rounded to 1/255.

    Raises:
        ValueError: naming ``where`` for another dtype or a value out of range.
    """
    array = np.asarray(array)
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        if array.size and (np.nanmin(array) < 0.0 or np.nanmax(array) > 1.0 or np.isnan(array).any()):
            raise ValueError(f"{where}: float masks must lie in [0, 1] (1 = foreground), got "
                             f"[{np.nanmin(array):.3g}, {np.nanmax(array):.3g}]")
        return np.round(array * 255.0).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
        if low < 0 or high > 255:
            raise ValueError(f"{where}: integer masks must lie in 0..255 (255 = foreground), got {low}..{high}")
        if high <= 1:  # a 0/1 mask: 1 is foreground
            return array.astype(np.uint8) * 255
        return array.astype(np.uint8, copy=False)
    raise ValueError(f"{where}: masks must be boolean, integer or float arrays, got {array.dtype}")


def _resized(mask: np.ndarray, size: tuple[int, int], resize: bool, where: str) -> np.ndarray:
    """``mask`` (uint8 ``[H, W]``) at ``size`` = (height, width): bilinear when ``resize``, else it must match."""
    if mask.shape == size:
        return mask
    if not resize:
        raise ValueError(f"{where}: the mask is {mask.shape[1]}x{mask.shape[0]} but its image is {size[1]}x{size[0]}; "
                         "masks must have their images' size (or set data.image_size to resize both)")
    from PIL import Image  # noqa: PLC0415 - imported lazily: only resizing needs Pillow

    return np.asarray(Image.fromarray(mask).resize((size[1], size[0]), Image.Resampling.BILINEAR), dtype=np.uint8)


def _read_one(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        array = np.load(path, allow_pickle=False)
    else:
        from PIL import Image  # noqa: PLC0415

        with Image.open(path) as img:
            if img.mode not in ("1", "L", "I", "I;16", "F", "P"):
                raise ValueError(f"{path}: a mask must be a single-channel image (mode 1, L, I or F), got mode {img.mode}")
            array = np.asarray(img.convert("L") if img.mode in ("1", "P") else img)
    if array.ndim != 2:
        raise ValueError(f"{path}: a mask must be a 2-D array [H, W], got shape {array.shape}")
    return as_mask(array, str(path))


def read_mask_file(path: Path, size: tuple[int, int], resize: bool) -> np.ndarray:
    """One mask file as uint8 ``[H, W]`` at ``size`` (255 = foreground), resized bilinearly when ``resize``."""
    return _resized(_read_one(Path(path)), size, resize, str(path))


class FileMasks(FileImages):
    """A split's per-image mask files (``data.external_masks`` as a folder) as uint8 ``[N, H, W]``, read when indexed.

    The stream-mode twin of the mask array memory mode reads at ingestion: a row is read and
    converted (255 = foreground) and resized to the images' ``size`` when ``resize`` is set,
    exactly as :func:`read_mask_files` does for the whole array. Loader
    workers read the rows of each batch beside its images.

    Args:
        root: the mask folder the relative names start from.
        files: relative paths of the mask files, in split order.
        size: ``(H, W)`` of the split's images.
        resize: resize masks of another size bilinearly (``data.image_size`` is set); else they must match.
    """

    ndim = 3

    def __init__(self, root: str | os.PathLike[str], files: Sequence[str], size: Sequence[int], resize: bool) -> None:
        self.root = str(root)
        self.files = [str(f) for f in files]
        self.resize = bool(resize)
        self.image_size = None
        self._shape = (int(size[0]), int(size[1]))  # type: ignore[assignment]

    def decode(self, row: int) -> np.ndarray:
        """Row ``row`` as uint8 ``[H, W]`` (255 = foreground); a ``ValueError`` naming the file if it does not fit."""
        mask = read_mask_file(self.path(row), self._shape, self.resize)  # type: ignore[arg-type]
        return mask if mask.flags.writeable else mask.copy()  # torch shares a writable array without a warning

    def subset(self, index: Any) -> FileMasks:
        return FileMasks(self.root, [self.files[int(r)] for r in self.rows(index)], self._shape, self.resize)

    def digest(self) -> str:
        return listing_digest(self.files, [self.path(i).stat().st_size for i in range(len(self))],
                              f"masks {self._shape[0]}x{self._shape[1]} resize={self.resize}")


def read_mask_files(
    image_files: Sequence[Path], image_root: Path, mask_root: Path, size: tuple[int, int], resize: bool,
    stream: bool = False,
) -> np.ndarray | FileMasks:
    """The masks of ``image_files`` from the folder ``mask_root`` that mirrors ``image_root``, as uint8 ``[N, H, W]``.

    With ``stream`` the masks stay in their files: a :class:`~dhat.data.files.FileMasks` that reads
    each row when it is used (the first one is read now, to check it).

    Raises:
        FileNotFoundError: listing images that have no mask file (the first few, and how many).
        ValueError: for a mask of the wrong size or kind, naming its file.
    """
    from tqdm.auto import tqdm  # noqa: PLC0415

    found: list[Path] = []
    missing: list[Path] = []
    for image in image_files:
        relative = Path(image).relative_to(image_root)
        candidates = [mask_root / relative.with_suffix(suffix) for suffix in MASK_FILE_SUFFIXES]
        match = next((c for c in candidates if c.is_file()), None)
        if match is None:
            missing.append(relative)
        else:
            found.append(match)
    if missing:
        listed = ", ".join(str(m) for m in missing[:_MAX_LISTED])
        raise FileNotFoundError(
            f"data.external_masks={str(mask_root)!r}: {len(missing)} of {len(image_files)} training images have no mask "
            f"file (e.g. {listed}); expected <external_masks>/<same relative path>{'|'.join(MASK_FILE_SUFFIXES)}"
        )
    if stream:
        masks = FileMasks(mask_root, [p.relative_to(mask_root).as_posix() for p in found], size, resize)
        if len(masks):
            masks.decode(0)
        logger.info("External masks stay in their %d files under %s (stream mode)", len(masks), mask_root)
        return masks
    out = np.empty((len(found), *size), dtype=np.uint8)
    for i, path in enumerate(tqdm(found, desc="external masks", unit="mask", leave=False)):
        out[i] = read_mask_file(path, size, resize)
    return out


def _load_array_file(path: Path, where: str) -> tuple[np.ndarray, list[str] | None]:
    """``(masks, files or None)`` of a ``.npy`` (memory-mapped) or ``.npz`` mask file; never unpickles."""
    if path.suffix not in (".npy", ".npz"):
        raise ValueError(f"{where}: give a folder of per-image mask files, a .npy or an .npz file")
    try:
        if path.suffix == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False), None
        with np.load(path, allow_pickle=False) as archive:
            if "masks" not in archive.files:
                raise ValueError(f"{where}: expected an array 'masks' [N, H, W], found {sorted(archive.files)}")
            files = [str(f) for f in archive["files"]] if "files" in archive.files else None
            return archive["masks"], files
    except (ValueError, OSError) as error:
        if str(error).startswith(where):
            raise
        raise ValueError(f"{where} cannot be read as a mask array ({error}); masks must be numeric or boolean "
                         "arrays: object arrays are never unpickled") from error


def read_mask_array(
    path: Path,
    positions: np.ndarray,
    pool_size: int,
    size: tuple[int, int],
    resize: bool,
    pool_files: Sequence[str] | None = None,
) -> np.ndarray:
    """Rows ``positions`` of the mask array in ``path`` (aligned with a training pool of ``pool_size`` images).

    Args:
        path: ``.npy`` (``[N, H, W]``) or ``.npz`` with ``masks`` (and optionally ``files``).
        positions: the kept training images' positions in the pool.
        pool_size: how many images the pool has (the array must have as many masks).
        size: (height, width) of the images.
        resize: resize masks of another size (bilinear), as the images were.
        pool_files: the pool's image paths relative to ``data.root`` (image folders), for
            matching an ``.npz`` that names its files.

    Raises:
        ValueError: naming the file when the counts, the file names or the shapes do not match.
    """
    where = f"data.external_masks={str(path)!r}"
    masks, files = _load_array_file(path, where)
    if masks.ndim != 3:
        raise ValueError(f"{where}: masks must have shape [N, H, W], got {masks.shape}")
    if files is not None:
        if len(files) != masks.shape[0]:
            raise ValueError(f"{where}: 'files' has {len(files)} entries but 'masks' has {masks.shape[0]}")
        if pool_files is None:
            raise ValueError(f"{where}: the file names in 'files' can only be matched to an image folder's images; "
                             "this source has no files: drop 'files' and align the masks with its training images")
        row = {Path(f).as_posix(): i for i, f in enumerate(files)}
        wanted = [Path(pool_files[p]).as_posix() for p in positions]
        missing = [w for w in wanted if w not in row]
        if missing:
            raise ValueError(f"{where}: {len(missing)} training images have no mask in 'files' "
                             f"(e.g. {', '.join(missing[:_MAX_LISTED])})")
        rows = np.asarray([row[w] for w in wanted], dtype=np.int64)
    else:
        if masks.shape[0] != pool_size:
            raise ValueError(f"{where}: {masks.shape[0]} masks but the source's training pool has {pool_size} images; "
                             "the array must hold one mask per training image, in the source's order (or name the "
                             "images in a 'files' array of an .npz)")
        rows = np.asarray(positions, dtype=np.int64)
    if len(rows) * size[0] * size[1] > MATERIALISE_LIMIT_BYTES:
        raise ValueError(f"{where}: the {len(rows):,} training images' masks would take "
                         f"{len(rows) * size[0] * size[1] / 2**30:.1f} GiB in memory; give a folder of per-image mask "
                         "files instead (read per batch in stream mode)")
    # One conversion for the whole selection, so a 0/1 array is recognised as such from all its values.
    selected = as_mask(np.asarray(masks[rows]), where)
    if selected.shape[1:] != size:
        selected = np.stack([_resized(m, size, resize, f"{where}[{r}]") for m, r in zip(selected, rows, strict=True)])
    logger.info("Read %d external masks from %s", len(rows), path)
    return selected
