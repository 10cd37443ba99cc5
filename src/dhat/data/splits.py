"""Seeded, stratified subsets of image sets.

An *image set* is a ``dict[str, np.ndarray]`` whose arrays all share their
first dimension ``N``; ``labels`` (int64 ``[N]``) is required, ``images``
(uint8 ``[N, H, W, C]``) is what every loader returns, and any further key
(``masks``, ``styles``, ...) is carried through every operation here, so a
foreground mask never gets separated from its image.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from dhat.data.files import FileImages

__all__ = [
    "validate_image_set",
    "set_size",
    "index_set",
    "stratified_indices",
    "split_positions",
    "split_train_val",
    "subset_positions",
    "take_positions",
    "take_subset",
    "concat_sets",
]

ImageSet = dict[str, np.ndarray]


def validate_image_set(image_set: Mapping[str, np.ndarray], name: str = "image_set") -> int:
    """Check that ``image_set`` is a mapping of equally long arrays with ``labels``; return ``N``.

    Args:
        image_set: the set to check.
        name: how the set is called in error messages (a parameter or dataset name).

    Raises:
        ValueError: naming ``name`` and the offending key when the set is not a
            mapping, has no ``labels``, holds a non-array, or has arrays of
            different lengths.
    """
    if not isinstance(image_set, Mapping):
        raise ValueError(f"{name} must be a dict of numpy arrays (an image set), got {type(image_set).__name__}")
    if "labels" not in image_set:
        raise ValueError(f"{name} has no 'labels' array; an image set needs at least 'labels' (keys: {sorted(image_set)})")
    sizes: dict[str, int] = {}
    for key, value in image_set.items():
        if not isinstance(value, np.ndarray | FileImages) or value.ndim == 0:
            raise ValueError(f"{name}[{key!r}] must be a numpy array with a first (sample) dimension")
        sizes[key] = int(value.shape[0])
    if len(set(sizes.values())) > 1:
        raise ValueError(f"{name} arrays must all have the same length, got {sizes}")
    if image_set["labels"].ndim != 1 or not np.issubdtype(image_set["labels"].dtype, np.integer):
        raise ValueError(f"{name}['labels'] must be a 1-D integer array, got {image_set['labels'].dtype} "
                         f"with shape {image_set['labels'].shape}")
    return sizes["labels"]


def set_size(image_set: Mapping[str, np.ndarray]) -> int:
    """Number of samples in ``image_set`` (after validating it)."""
    return validate_image_set(image_set)


def index_set(image_set: Mapping[str, np.ndarray], indices: np.ndarray) -> ImageSet:
    """Rows ``indices`` of every array of ``image_set`` (a new dict; arrays are copies)."""
    indices = np.asarray(indices, dtype=np.int64)
    return {key: value[indices] for key, value in image_set.items()}


def _resolve_count(size: int | float, total: int, name: str) -> int:
    """Turn ``size`` (a count, or a fraction in (0, 1)) into a count out of ``total``."""
    if isinstance(size, bool) or not isinstance(size, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a count (int) or a fraction in (0, 1) (float), got {size!r}")
    if isinstance(size, float | np.floating):
        if not 0.0 < float(size) < 1.0:
            raise ValueError(f"{name} as a fraction must lie in (0, 1), got {size}; pass an int for a count")
        return int(round(float(size) * total))
    if size < 0:
        raise ValueError(f"{name} must be >= 0, got {size}")
    return int(size)


def _stratified_quota(labels: np.ndarray, n: int, rng: np.random.Generator) -> dict[int, int]:
    """How many samples of each class a stratified draw of ``n`` takes.

    Each class gets ``floor(n * share)``; the leftover units go to the classes
    with the largest fractional remainders (ties broken at random), so the
    class proportions of the subset are as close as integers allow.
    """
    classes, counts = np.unique(labels, return_counts=True)
    exact = n * counts / counts.sum()
    quota = np.floor(exact).astype(np.int64)
    leftover = n - int(quota.sum())
    if leftover > 0:
        # Random jitter smaller than any real gap between remainders only breaks ties.
        order = np.lexsort((rng.random(len(classes)), -(exact - quota)))
        for i in order:
            if leftover == 0:
                break
            if quota[i] < counts[i]:
                quota[i] += 1
                leftover -= 1
    return {int(c): int(q) for c, q in zip(classes, quota, strict=True)}


def stratified_indices(labels: np.ndarray, n: int, seed: int | np.random.Generator, stratified: bool = True) -> np.ndarray:
    """Sorted indices of a seeded random subset of size ``n`` of ``labels``.

    With ``stratified`` the subset keeps the class proportions of ``labels``
    (to within one sample per class); otherwise it is a plain uniform draw.

    Args:
        labels: ``[N]`` integer labels.
        n: subset size, ``0 <= n <= N``.
        seed: an int seed or a numpy ``Generator`` (used as is).
        stratified: whether to stratify by label.

    Raises:
        ValueError: when ``n`` is outside ``[0, N]``.
    """
    labels = np.asarray(labels)
    total = len(labels)
    if not 0 <= n <= total:
        raise ValueError(f"subset size must lie in [0, {total}] for a set of {total} samples, got {n}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if not stratified:
        return np.sort(rng.permutation(total)[:n])
    quota = _stratified_quota(labels, n, rng)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in quota.items()]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def split_positions(
    labels: np.ndarray, val_size: int | float, seed: int, stratified: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """``(train_positions, val_positions)``: the draw of :func:`split_train_val`, on the labels alone.

    Sources that read images lazily (image folders) split their file list with it and
    decode only what each split keeps; the result equals splitting the decoded set.

    Raises:
        ValueError: naming ``val_size`` when it is negative, not below ``N``, or a
            fraction outside (0, 1).
    """
    labels = np.asarray(labels)
    total = len(labels)
    count = _resolve_count(val_size, total, "val_size")
    if count >= total:
        raise ValueError(f"val_size={val_size} leaves no training samples out of {total}; choose a smaller val_size")
    val_idx = stratified_indices(labels, count, seed, stratified)
    keep = np.ones(total, dtype=bool)
    keep[val_idx] = False
    return np.flatnonzero(keep), val_idx


def subset_positions(
    labels: np.ndarray, size: int | float | None, seed: int | np.random.Generator, name: str
) -> np.ndarray:
    """Sorted positions of a seeded, class-stratified subset of ``size`` samples of ``labels``.

    Args:
        labels: ``[N]`` labels of the pool to draw from.
        size: a count, a fraction in (0, 1) of the pool, or ``None`` for every sample.
        seed: an int seed or a numpy ``Generator``.
        name: the parameter in error messages (``data.train_size``).

    Raises:
        ValueError: naming ``name`` when ``size`` is not a count or a fraction, is 0, or
            asks for more samples than the pool holds.
    """
    labels = np.asarray(labels)
    total = len(labels)
    if size is None:
        return np.arange(total, dtype=np.int64)
    count = _resolve_count(size, total, name)
    if count < 1:
        raise ValueError(f"{name}={size} keeps no samples out of {total}; give a positive count or fraction (or null for all)")
    if count > total:
        raise ValueError(f"{name}={size} asks for more samples than the {total} available; "
                         f"give at most {total} (or null for all)")
    return stratified_indices(labels, count, seed)


def split_train_val(
    train_set: Mapping[str, np.ndarray], val_size: int | float, seed: int, stratified: bool = True
) -> tuple[ImageSet, ImageSet]:
    """Hold out a validation split from ``train_set`` with a fixed seed.

    Args:
        train_set: the image set to split (every key is split alike).
        val_size: number of validation samples, or a fraction in (0, 1).
        seed: seed of the draw; the same seed gives the same split.
        stratified: keep class proportions equal in both parts.

    Returns:
        ``(train, val)``: disjoint image sets that together hold every sample
        of ``train_set``, each in the original order.

    Raises:
        ValueError: naming ``val_size`` when it is negative, not below ``N``, or
            a fraction outside (0, 1).
    """
    validate_image_set(train_set, "train_set")
    train_idx, val_idx = split_positions(train_set["labels"], val_size, seed, stratified)
    return index_set(train_set, train_idx), index_set(train_set, val_idx)


def take_positions(labels: np.ndarray, n: int | None, seed: int, stratified: bool = True) -> np.ndarray:
    """Sorted positions of the fixed seeded subset :func:`take_subset` takes (every position for ``n=None``
    or ``n >= N``).

    Raises:
        ValueError: naming ``n`` when it is not a positive integer.
    """
    total = len(labels)
    if n is None or (not isinstance(n, bool) and isinstance(n, int | np.integer) and n >= total):
        return np.arange(total, dtype=np.int64)
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n <= 0:
        raise ValueError(f"subset size n must be a positive integer or None (all samples), got {n!r}")
    return stratified_indices(labels, int(n), seed, stratified)


def take_subset(
    image_set: Mapping[str, np.ndarray], n: int | None, seed: int, stratified: bool = True
) -> ImageSet:
    """A fixed seeded subset of ``n`` samples (e.g. an evaluation subset), at :func:`take_positions`.

    ``n=None`` or ``n >= N`` returns every sample (as a shallow copy of the
    dict), so configurations can say "no subset" without a special case.

    Raises:
        ValueError: naming ``n`` when it is not a positive integer.
    """
    total = validate_image_set(image_set)
    positions = take_positions(image_set["labels"], n, seed, stratified)
    if len(positions) == total:
        return dict(image_set)
    return index_set(image_set, positions)


def concat_sets(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> ImageSet:
    """Samples of ``a`` followed by those of ``b`` (e.g. extra generated data appended to train).

    Both sets must have the same keys, and per key the same trailing shape;
    ``b`` is cast to ``a``'s dtype (an error if that would change values'
    kind, e.g. float images into a uint8 set).

    Raises:
        ValueError: naming the key that is missing from one set or whose shape
            or dtype kind differs.
    """
    validate_image_set(a, "a")
    validate_image_set(b, "b")
    if set(a) != set(b):
        raise ValueError(
            f"cannot concatenate image sets with different keys: only in the first {sorted(set(a) - set(b))}, "
            f"only in the second {sorted(set(b) - set(a))}; drop or add those keys first"
        )
    out: ImageSet = {}
    for key in a:
        if a[key].shape[1:] != b[key].shape[1:]:
            raise ValueError(f"cannot concatenate {key!r}: per-sample shapes {a[key].shape[1:]} and {b[key].shape[1:]} "
                             "differ; resize one set first")
        if a[key].dtype.kind != b[key].dtype.kind:
            raise ValueError(f"cannot concatenate {key!r}: dtypes {a[key].dtype} and {b[key].dtype} differ in kind")
        out[key] = np.concatenate([a[key], b[key].astype(a[key].dtype, copy=False)], axis=0)
    return out
