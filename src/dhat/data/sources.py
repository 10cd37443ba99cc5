"""Loaders that turn external data into image sets.

Every loader returns image sets (``images`` uint8 ``[N, H, W, 3]``, ``labels``
int64 ``[N]``); the ones that read a whole data set also return the class
names in label order.

- :func:`load_torchvision_cifar`: CIFAR-10/100 through torchvision.
- :func:`load_image_folder`: ``<root>/{train,test}/<class>/*`` image folders
  (Imagenette, ImageNet subsets, the JPEG copy of CIFAR-10); :func:`list_image_folder`
  and :func:`read_images` are its two halves, so a caller can decode only the files
  it keeps (a validation split, a training subset).
- :func:`load_extra_npz`: extra generated training data stored as ``.npz``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dhat.data.files import decode_image

__all__ = [
    "IMAGE_EXTENSIONS",
    "CIFAR_FOLDERS",
    "FolderListing",
    "check_image_size",
    "check_same_size",
    "load_torchvision_cifar",
    "list_image_folder",
    "read_images",
    "load_image_folder",
    "load_extra_npz",
]

ImageSet = dict[str, np.ndarray]

# The suffixes torchvision's ImageFolder accepts, so the same folders load in both.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

# Sub-folder that torchvision extracts each CIFAR archive into.
CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def load_torchvision_cifar(name: str, root: str, download: bool = False) -> tuple[ImageSet, ImageSet, list[str]]:
    """CIFAR-10 or CIFAR-100 as ``(train_set, test_set, class_names)``.

    Args:
        name: ``"cifar10"`` or ``"cifar100"``.
        root: folder holding (or to receive) torchvision's extracted archive.
        download: let torchvision download the archive when it is missing.

    Raises:
        ValueError: naming ``name`` when it is not a CIFAR variant.
        FileNotFoundError: when the files are missing and cannot be downloaded;
            the message says which sub-folder of ``root`` torchvision expects and
            points to the image-folder source as the offline alternative.
    """
    if name not in CIFAR_FOLDERS:
        raise ValueError(f"data name={name!r} is not a torchvision CIFAR set; choose one of {sorted(CIFAR_FOLDERS)}")
    from torchvision import datasets  # noqa: PLC0415 - imported lazily: only this source needs torchvision

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    folder = CIFAR_FOLDERS[name]
    try:
        train = cls(root=root, train=True, download=download)
        test = cls(root=root, train=False, download=download)
    except (RuntimeError, OSError) as error:  # missing/corrupt files, or no network for the download
        how = "the download failed" if download else "download is off"
        raise FileNotFoundError(
            f"{name} not found under root={root!r} and {how} ({error}). Put the extracted python-version "
            f"archive there as {os.path.join(root, folder)} (the '{folder}' folder of the official "
            f"{name} python tarball), set download: true on a machine with internet, or use the "
            "image-folder source (<root>/{train,test}/<class>/*.jpg) instead."
        ) from error

    def to_set(ds: object) -> ImageSet:
        images = np.ascontiguousarray(np.asarray(ds.data, dtype=np.uint8))  # type: ignore[attr-defined]
        return {"images": images, "labels": np.asarray(ds.targets, dtype=np.int64)}  # type: ignore[attr-defined]

    return to_set(train), to_set(test), list(train.classes)


def _list_split(split_dir: Path, class_names: list[str] | None) -> tuple[list[Path], np.ndarray, list[str]]:
    """Files and labels of one split folder; ``class_names=None`` takes them from the folder."""
    found = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if class_names is None:
        class_names = found
        if not class_names:
            raise FileNotFoundError(
                f"no class folders in {split_dir}; expected layout <root>/train/<class>/<image>.jpg"
            )
    else:
        unknown = sorted(set(found) - set(class_names))
        if unknown:
            raise ValueError(
                f"{split_dir} has class folders not present in the train split: {unknown}; "
                "train and test must use the same class folder names"
            )
    files: list[Path] = []
    labels: list[int] = []
    for label, cls in enumerate(class_names):
        cls_dir = split_dir / cls
        if not cls_dir.is_dir():
            continue  # a test split may lack a class; the label numbering still follows train
        members = sorted(p for p in cls_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        files.extend(members)
        labels.extend([label] * len(members))
    if not files:
        raise FileNotFoundError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {split_dir}; "
            "expected layout <root>/{train,test}/<class>/<image>.jpg"
        )
    return files, np.asarray(labels, dtype=np.int64), class_names


def read_images(files: list[Path], image_size: int | None, desc: str = "images", workers: int | None = None) -> np.ndarray:
    """Decode ``files`` into one uint8 ``[N, H, W, 3]`` array with a thread pool.

    Each image is decoded by :func:`~dhat.data.files.decode_image` (RGB and, with ``image_size``,
    resized to ``image_size x image_size``, bilinear). The array is allocated once and filled
    in place, so memory is the decoded images and nothing more. PIL releases the GIL
    while decoding, so threads give a real speed-up on many small JPEGs without the
    cost of sending arrays between processes.

    Raises:
        ValueError: naming the first image whose size differs when ``image_size`` is ``None``.
    """
    from tqdm.auto import tqdm  # noqa: PLC0415

    if not files:
        raise ValueError(f"no {desc} to read")
    workers = workers or min(16, os.cpu_count() or 1)

    def read(path: Path) -> np.ndarray:
        return decode_image(path, image_size)

    first = read(files[0])
    out = np.empty((len(files), *first.shape), dtype=np.uint8)
    out[0] = first
    # Decoded images wait for their copy in windows of a few hundred: the pool never runs far ahead of
    # the copy, so memory is the output array and one window, however many files there are.
    window = 64 * workers
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(files), initial=1, desc=desc, unit="img", leave=False) as progress:
        for start in range(1, len(files), window):
            for i, array in enumerate(pool.map(read, files[start : start + window]), start=start):
                if array.shape != first.shape:
                    raise ValueError(
                        f"images differ in size: {files[i]} is {array.shape[1]}x{array.shape[0]} but {files[0]} is "
                        f"{first.shape[1]}x{first.shape[0]}; set image_size to resize every image to one size"
                    )
                out[i] = array
            progress.update(min(window, len(files) - start))
    return out


@dataclass(frozen=True)
class FolderListing:
    """The files of an image folder and their labels, before any pixel is decoded.

    ``train_files[i]`` has label ``train_labels[i]`` (likewise for test); class ids
    follow the sorted class folder names of ``train``, files within a class are sorted.
    """

    root: Path
    class_names: list[str]
    train_files: list[Path]
    train_labels: np.ndarray
    test_files: list[Path]
    test_labels: np.ndarray


def list_image_folder(root: str) -> FolderListing:
    """List ``<root>/{train,test}/<class>/*`` (the order of torchvision's ``ImageFolder``).

    Raises:
        FileNotFoundError: naming the missing folder and the expected layout.
        ValueError: when the test split has a class folder the train split lacks.
    """
    base = Path(root)
    layout = "<root>/train/<class>/<image>.jpg and <root>/test/<class>/<image>.jpg"
    if not base.is_dir():
        raise FileNotFoundError(f"image folder root {root!r} does not exist; expected layout {layout}")
    for split in ("train", "test"):
        if not (base / split).is_dir():
            raise FileNotFoundError(f"missing folder {base / split}; expected layout {layout}")
    train_files, train_labels, class_names = _list_split(base / "train", None)
    test_files, test_labels, _ = _list_split(base / "test", class_names)
    return FolderListing(base, class_names, train_files, train_labels, test_files, test_labels)


def check_image_size(image_size: int | None) -> None:
    """``image_size`` is ``None`` or a positive integer; otherwise a ``ValueError`` naming it."""
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0):
        raise ValueError(f"image_size must be a positive integer or None (keep stored size), got {image_size!r}")


def load_image_folder(
    root: str, image_size: int | None = None, workers: int | None = None
) -> tuple[ImageSet, ImageSet, list[str]]:
    """Read ``<root>/{train,test}/<class>/*`` into ``(train_set, test_set, class_names)``.

    Class ids follow the sorted class folder names of ``train`` (as in
    torchvision's ``ImageFolder``); files within a class are read in sorted
    order, so the result is deterministic.

    Args:
        root: folder with ``train`` and ``test`` sub-folders.
        image_size: resize every image to ``image_size x image_size``
            (bilinear); ``None`` keeps the stored size, which must then be the
            same for every image.
        workers: decoding threads (default: CPU count, at most 16).

    Raises:
        FileNotFoundError: naming the missing folder and the expected layout.
        ValueError: naming ``image_size`` when it is not a positive integer, or
            the first image whose size differs when ``image_size`` is ``None``.
    """
    check_image_size(image_size)
    listing = list_image_folder(root)
    train_images = read_images(listing.train_files, image_size, "train images", workers)
    test_images = read_images(listing.test_files, image_size, "test images", workers)
    check_same_size(train_images, test_images)
    return (
        {"images": train_images, "labels": listing.train_labels},
        {"images": test_images, "labels": listing.test_labels},
        listing.class_names,
    )


def check_same_size(train_images: np.ndarray, test_images: np.ndarray) -> None:
    """Train and test images must share one size; otherwise a ``ValueError`` pointing to ``image_size``."""
    if train_images.shape[1:] != test_images.shape[1:]:
        raise ValueError(
            f"train images are {train_images.shape[2]}x{train_images.shape[1]} but test images are "
            f"{test_images.shape[2]}x{test_images.shape[1]}; set image_size to resize both to one size"
        )


def load_extra_npz(path: str, num_classes: int | None = None, max_images: int | None = None) -> ImageSet:  # noqa: PLR0912 - one check per way the file can be wrong
    """Extra (e.g. generated) training data from an ``.npz`` file, as an image set.

    Accepts the keys ``images``/``labels`` or ``image``/``label`` (the naming
    of public generated-data releases). Images must be uint8 ``[N, H, W, 3]``;
    float images in ``[0, 1]`` are converted to uint8.

    Args:
        path: the ``.npz`` file.
        num_classes: when given, every label must lie in ``[0, num_classes)``.
        max_images: keep only the first ``max_images`` samples (``None``: all).

    Raises:
        FileNotFoundError: naming ``path`` when it does not exist.
        ValueError: naming the file and the key whose content is malformed.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"extra data file {path!r} does not exist; give the path of an .npz with images/labels")
    with np.load(file, allow_pickle=False) as archive:
        keys = set(archive.files)
        pair = next(((i, lab) for i, lab in (("images", "labels"), ("image", "label")) if i in keys and lab in keys), None)
        if pair is None:
            raise ValueError(f"{path}: expected arrays 'images' and 'labels' (or 'image' and 'label'), found {sorted(keys)}")
        images, labels = archive[pair[0]], archive[pair[1]]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{path}: '{pair[0]}' must have shape [N, H, W, 3] (channels last, RGB), got {images.shape}")
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.floating):
            raise ValueError(f"{path}: '{pair[0]}' must be uint8 (0..255) or float in [0, 1], got {images.dtype}")
        if images.size and (images.min() < 0.0 or images.max() > 1.0):
            raise ValueError(f"{path}: float '{pair[0]}' must lie in [0, 1], got [{images.min()}, {images.max()}]")
        images = np.round(images * 255.0).astype(np.uint8)
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: '{pair[1]}' must be a 1-D integer array, got {labels.dtype} with shape {labels.shape}")
    if len(labels) != len(images):
        raise ValueError(f"{path}: {len(images)} images but {len(labels)} labels; the two must match")
    if labels.size and labels.min() < 0:
        raise ValueError(f"{path}: labels must be >= 0, found {labels.min()}")
    if num_classes is not None and labels.size and labels.max() >= num_classes:
        raise ValueError(f"{path}: label {labels.max()} is out of range for num_classes={num_classes}")
    if max_images is not None:
        if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images <= 0:
            raise ValueError(f"max_images must be a positive integer or None, got {max_images!r}")
        images, labels = images[:max_images], labels[:max_images]
    return {"images": np.ascontiguousarray(images), "labels": labels.astype(np.int64)}
