"""Registry of data sources: ``data.source`` in ``conf/`` names one of them.

A source turns the ``data`` parameter section into train / validation / test image
sets (validation held out from train with ``data.seed``), their class names and
optional analysis variants of the test set, and declares what it provides beyond
images and labels (:mod:`dhat.data.capabilities`), so a run that needs more stops
before it starts. Adding a source is one function decorated with :func:`register_source`.

Every source honours the same selection keys:

- ``data.val_size``: validation images held out from the training pool (count or
  fraction; the embedded data holds out its own, ``data.embedded.val_size``);
- ``data.train_size`` / ``data.test_size``: keep a class-stratified, seeded subset of the
  training split (after the hold-out) or of the test split (count or fraction; ``null`` =
  all), for quick trials. Image folders decode only the files they keep;
- ``data.external_masks``: per-image masks computed elsewhere, attached to the kept
  training images as ``external_masks`` (:mod:`dhat.data.external_masks`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dhat.data.capabilities import DECORRELATED_VALIDATION, EXTERNAL_MASKS, TEST_VARIANTS, TRUE_MASKS
from dhat.data.embedded import DIGIT_CLASS_NAMES, make_digit_texture_benchmark
from dhat.data.external_masks import EXTERNAL_MASKS_KEY, FileMasks, read_mask_array, read_mask_files
from dhat.data.files import FileImages, decode_image
from dhat.data.sources import (
    check_image_size,
    check_same_size,
    list_image_folder,
    load_torchvision_cifar,
    read_images,
)
from dhat.data.splits import index_set, split_positions, subset_positions
from dhat.data.storage import StorageChoice, choose_storage, device_free_bytes
from dhat.registry import Registry

__all__ = ["EXTERNAL_MASKS_KEY", "SourceData", "available_sources", "load_source", "register_source", "source_provides"]

ImageSet = dict[str, np.ndarray]


@dataclass
class SourceData:
    """What a source returns: the three splits, the class names, the test variants and the validation variants
    (both may be empty; the embedded benchmark's ``val_variants["decorrelated"]`` has class-independent backgrounds)."""

    train: ImageSet
    val: ImageSet
    test: ImageSet
    class_names: list[str]
    variants: dict[str, ImageSet] = field(default_factory=dict)
    val_variants: dict[str, ImageSet] = field(default_factory=dict)
    storage: StorageChoice | None = None  # set by sources that can stream; None: arrays in memory


#: ``loader(data_params, seed, device)``; ``device`` (the run's ``device`` parameter) sizes a storage choice.
SourceLoader = Callable[[Mapping[str, Any], int, str], SourceData]
#: Data sources by name (``data.source``).
SOURCES: Registry[SourceLoader] = Registry("data source", "data.source")
_PROVIDES: dict[str, frozenset[str]] = {}


def register_source(name: str, provides: Iterable[str] = ()) -> Callable[[SourceLoader], SourceLoader]:
    """Decorator registering ``fn(data_params, seed, device) -> SourceData`` as ``data.source: name``.

    ``provides`` lists the capabilities of :mod:`dhat.data.capabilities` that every data
    set of this source has (true masks, test variants, ...).
    """
    _PROVIDES[name] = frozenset(provides)
    return SOURCES.register(name)


def available_sources() -> tuple[str, ...]:
    """Names of the registered sources, in registration order."""
    return SOURCES.names()


def check_source(name: Any) -> str:
    """``name`` if it is a registered source; otherwise a ``ValueError`` naming ``data.source``."""
    SOURCES.get(name)
    return name


def source_provides(data: Mapping[str, Any]) -> frozenset[str]:
    """What the data that ``data`` configures provides: its source's capabilities, plus external masks if named."""
    source = check_source(data.get("source", "embedded"))
    extra = {EXTERNAL_MASKS} if data.get("external_masks") else set()
    return _PROVIDES.get(source, frozenset()) | extra


def load_source(data: Mapping[str, Any], device: str = "auto") -> SourceData:
    """Load the source that ``data["source"]`` names (default ``embedded``) with ``data["seed"]``.

    ``device`` is where the run trains (the ``device`` parameter): a source that can stream
    counts its free memory when ``data.storage`` is ``auto``.
    """
    loader = SOURCES.get(data.get("source", "embedded"))
    return loader(data, int(data.get("seed", 0)), device)


def _train_subset(labels: np.ndarray, data: Mapping[str, Any], seed: int) -> np.ndarray:
    """Positions (into ``labels``) of the training images ``data.train_size`` keeps."""
    return subset_positions(labels, data.get("train_size"), np.random.default_rng([seed, 1]), "data.train_size")


def _test_subset(labels: np.ndarray, data: Mapping[str, Any], seed: int) -> np.ndarray:
    """Positions (into ``labels``) of the test images ``data.test_size`` keeps."""
    return subset_positions(labels, data.get("test_size"), np.random.default_rng([seed, 2]), "data.test_size")


@dataclass(frozen=True)
class _Selection:
    """Pool positions of the images each split keeps (train and val from the training pool)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    @classmethod
    def of(cls, train_labels: np.ndarray, test_labels: np.ndarray, data: Mapping[str, Any], seed: int) -> _Selection:
        """Validation held out from the training pool (as :func:`~dhat.data.splits.split_train_val`), then the subsets."""
        pool, val = split_positions(train_labels, data.get("val_size", 0.02), seed)
        train = pool[_train_subset(train_labels[pool], data, seed)]
        return cls(train, val, _test_subset(test_labels, data, seed))


def _external_masks(data: Mapping[str, Any], positions: np.ndarray, pool_size: int, size: tuple[int, int],
                    resize: bool = False, files: list[Path] | None = None, root: Path | None = None,
                    stream: bool = False) -> np.ndarray | FileMasks:
    """The ``data.external_masks`` of the kept training images (pool ``positions``); a folder of mask files stays
    in its files in stream mode (``stream``)."""
    path = Path(str(data["external_masks"]))
    if path.is_dir():
        if files is None or root is None:
            raise ValueError(f"data.external_masks={str(path)!r} is a folder of per-image files, but data.source="
                             f"{data.get('source', 'embedded')!r} has no image files to mirror; give one .npy/.npz "
                             "array aligned with its training images instead")
        return read_mask_files([files[p] for p in positions], root, path, size, resize, stream=stream)
    if not path.is_file():
        raise FileNotFoundError(f"data.external_masks={str(path)!r} does not exist; give a folder mirroring the image "
                                "folder (<masks>/train/<class>/<name>.png) or a .npy/.npz array of masks")
    pool_files = None if files is None or root is None else [f.relative_to(root).as_posix() for f in files]
    return read_mask_array(path, positions, pool_size, size, resize, pool_files)


@register_source("embedded", provides=(TRUE_MASKS, TEST_VARIANTS, DECORRELATED_VALIDATION))
def _embedded(data: Mapping[str, Any], seed: int, device: str) -> SourceData:
    """Digits on class-correlated textures, with true masks and test variants (``data.embedded``)."""
    del device  # generated arrays: no storage to choose
    sets = make_digit_texture_benchmark(seed=seed, **data.get("embedded", {}))
    pool = sets["train"]
    keep_train = _train_subset(pool["labels"], data, seed)
    keep_test = _test_subset(sets["test"]["labels"], data, seed)
    train = index_set(pool, keep_train) if len(keep_train) < len(pool["labels"]) else pool
    if data.get("external_masks"):
        train[EXTERNAL_MASKS_KEY] = _external_masks(data, keep_train, len(pool["labels"]), pool["images"].shape[1:3])
    subset = len(keep_test) < len(sets["test"]["labels"])
    tests = {name: index_set(value, keep_test) if subset else value
             for name, value in sets.items() if name.startswith("test")}
    variants = {name: value for name, value in tests.items() if name != "test"}
    return SourceData(train, sets["val"], tests["test"], list(DIGIT_CLASS_NAMES), variants,
                      {"decorrelated": sets["val_decorrelated"]})


def _from_arrays(full_train: ImageSet, test: ImageSet, class_names: list[str], data: Mapping[str, Any],
                 seed: int) -> SourceData:
    """Splits of a source whose images are all in memory already (CIFAR through torchvision)."""
    chosen = _Selection.of(full_train["labels"], test["labels"], data, seed)
    train = index_set(full_train, chosen.train)
    if data.get("external_masks"):
        train[EXTERNAL_MASKS_KEY] = _external_masks(data, chosen.train, len(full_train["labels"]),
                                                    full_train["images"].shape[1:3])
    test = test if len(chosen.test) == len(test["labels"]) else index_set(test, chosen.test)
    return SourceData(train, index_set(full_train, chosen.val), test, list(class_names))


def _cifar(name: str) -> SourceLoader:
    def load(data: Mapping[str, Any], seed: int, device: str) -> SourceData:
        del device  # arrays in memory: no storage to choose
        full_train, test, class_names = load_torchvision_cifar(
            name, root=str(data.get("root", "data/01_raw")), download=bool(data.get("download", True))
        )
        return _from_arrays(full_train, test, class_names, data, seed)

    load.__doc__ = f"{name.upper()} through torchvision (``data.root``, ``data.download``)."
    return load


register_source("cifar10")(_cifar("cifar10"))
register_source("cifar100")(_cifar("cifar100"))


@register_source("image_folder")
def _image_folder(data: Mapping[str, Any], seed: int, device: str) -> SourceData:
    """``<data.root>/{train,test}/<class>/*`` images, optionally resized to ``data.image_size``.

    The files are listed first and split on their labels, so only the images the splits
    keep are decoded, each straight into its split's array.
    """
    if not data.get("root"):
        raise ValueError("data.root must name the image folder (<root>/{train,test}/<class>/*) for source image_folder")
    image_size = data.get("image_size")
    check_image_size(image_size)
    listing = list_image_folder(str(data["root"]))
    chosen = _Selection.of(listing.train_labels, listing.test_labels, data, seed)

    def decode(files: list[Path], labels: np.ndarray, positions: np.ndarray, desc: str, like: ImageSet | None = None):
        if like is not None and len(positions) == 0:  # e.g. val_size: 0
            return {"images": like["images"][:0].copy(), "labels": labels[:0].astype(np.int64)}
        return {"images": read_images([files[p] for p in positions], image_size, desc),
                "labels": labels[positions].astype(np.int64)}

    first = decode_image(listing.train_files[chosen.train[0] if len(chosen.train) else 0], image_size)
    kept = len(chosen.train) + len(chosen.val) + len(chosen.test)
    requested = data.get("storage", "auto")
    storage = choose_storage(requested, "image_folder", kept * first.nbytes,
                             device_free=device_free_bytes(device) if requested == "auto" else None)
    if storage.mode == "stream":
        train, val, test = (_file_set(listing.root, files, labels, positions, image_size, first.shape)
                            for files, labels, positions in ((listing.train_files, listing.train_labels, chosen.train),
                                                             (listing.train_files, listing.train_labels, chosen.val),
                                                             (listing.test_files, listing.test_labels, chosen.test)))
    else:
        train = decode(listing.train_files, listing.train_labels, chosen.train, "train images")
        val = decode(listing.train_files, listing.train_labels, chosen.val, "validation images", like=train)
        test = decode(listing.test_files, listing.test_labels, chosen.test, "test images")
    check_same_size(train["images"], test["images"])
    if data.get("external_masks"):
        train[EXTERNAL_MASKS_KEY] = _external_masks(
            data, chosen.train, len(listing.train_labels), train["images"].shape[1:3], resize=image_size is not None,
            files=listing.train_files, root=listing.root, stream=storage.mode == "stream")
    return SourceData(train, val, test, listing.class_names, storage=storage)


def _file_set(root: Path, files: list[Path], labels: np.ndarray, positions: np.ndarray, image_size: int | None,
              shape: tuple[int, ...]) -> dict[str, Any]:
    """A split that stays in its files (stream mode): its images as :class:`FileImages`, nothing decoded."""
    names = [files[p].relative_to(root).as_posix() for p in positions]
    return {"images": FileImages(root, names, image_size, shape=shape),  # type: ignore[arg-type]
            "labels": labels[positions].astype(np.int64)}
