"""Tests of the external data sources and of the seeded splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dhat.data import (
    concat_sets,
    load_extra_npz,
    load_image_folder,
    load_torchvision_cifar,
    split_train_val,
    stratified_indices,
    take_subset,
)

# ---------------------------------------------------------------- image folders

# Class folder -> solid colour of its images; names chosen so sorted order != insertion order.
COLOURS = {"zebra": (250, 10, 10), "ant": (10, 250, 10), "moth": (10, 10, 250)}


def _make_folder(root: Path, counts: dict[str, dict[str, int]], size: tuple[int, int] = (6, 6)) -> None:
    for split, per_class in counts.items():
        for cls, n in per_class.items():
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                # PNG is lossless, so pixel values can be checked exactly.
                Image.new("RGB", size, COLOURS[cls]).save(folder / f"{i:03d}.png")
            (folder / "notes.txt").write_text("not an image")


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    _make_folder(tmp_path, {"train": {"zebra": 3, "ant": 2, "moth": 1}, "test": {"zebra": 1, "ant": 2}})
    return tmp_path


def test_image_folder_shapes_labels_and_class_order(folder):
    train, test, names = load_image_folder(str(folder), image_size=None, workers=2)
    assert names == ["ant", "moth", "zebra"]
    assert train["images"].shape == (6, 6, 6, 3) and train["images"].dtype == np.uint8
    np.testing.assert_array_equal(train["labels"], [0, 0, 1, 2, 2, 2])
    assert train["labels"].dtype == np.int64
    # Test lacks "moth"; its labels still use the train numbering.
    np.testing.assert_array_equal(test["labels"], [0, 0, 2])
    for image_set in (train, test):
        for image, label in zip(image_set["images"], image_set["labels"], strict=True):
            assert np.all(image == np.array(COLOURS[names[label]], dtype=np.uint8))


def test_image_folder_resize(folder):
    # Add one odd-sized image: without image_size this is an error, with it every image is resized.
    Image.new("RGB", (9, 5), COLOURS["moth"]).save(folder / "train" / "moth" / "big.png")
    with pytest.raises(ValueError, match="image_size"):
        load_image_folder(str(folder), image_size=None, workers=2)
    train, test, _ = load_image_folder(str(folder), image_size=4, workers=2)
    assert train["images"].shape == (7, 4, 4, 3) and test["images"].shape == (3, 4, 4, 3)
    # A solid colour stays that colour under bilinear resizing.
    np.testing.assert_array_equal(train["images"][train["labels"] == 1], np.broadcast_to(COLOURS["moth"], (2, 4, 4, 3)))


def test_image_folder_errors(tmp_path, folder):
    with pytest.raises(FileNotFoundError, match="does not exist.*<root>/train/<class>"):
        load_image_folder(str(tmp_path / "nowhere"), None)
    _make_folder(tmp_path / "only_train", {"train": {"ant": 1}})
    with pytest.raises(FileNotFoundError, match=r"only_train.test.*expected layout"):
        load_image_folder(str(tmp_path / "only_train"), None)
    _make_folder(tmp_path / "bad_test", {"train": {"ant": 1}, "test": {"moth": 1}})
    with pytest.raises(ValueError, match="moth"):
        load_image_folder(str(tmp_path / "bad_test"), None)
    (tmp_path / "empty" / "train" / "ant").mkdir(parents=True)
    (tmp_path / "empty" / "test").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no images"):
        load_image_folder(str(tmp_path / "empty"), None)
    with pytest.raises(ValueError, match="image_size"):
        load_image_folder(str(folder), image_size=0)


# ---------------------------------------------------------------- CIFAR


def test_cifar_missing_files_error(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_torchvision_cifar("cifar10", str(tmp_path), download=False)
    message = str(info.value)
    assert "cifar-10-batches-py" in message and str(tmp_path) in message and "image-folder" in message
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        load_torchvision_cifar("cifar100", str(tmp_path), download=False)
    with pytest.raises(ValueError, match="cifar10"):
        load_torchvision_cifar("svhn", str(tmp_path), download=False)


# ---------------------------------------------------------------- extra npz


def test_extra_npz_both_key_namings(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5])
    np.savez(tmp_path / "a.npz", images=images, labels=labels)
    np.savez(tmp_path / "b.npz", image=images, label=labels.astype(np.int32))
    for name in ("a.npz", "b.npz"):
        out = load_extra_npz(str(tmp_path / name))
        np.testing.assert_array_equal(out["images"], images)
        np.testing.assert_array_equal(out["labels"], labels)
        assert out["labels"].dtype == np.int64
    assert load_extra_npz(str(tmp_path / "a.npz"), max_images=2)["images"].shape == (2, 4, 4, 3)


def test_extra_npz_float_images_are_converted(tmp_path):
    np.savez(tmp_path / "f.npz", images=np.full((2, 3, 3, 3), 0.5, dtype=np.float32), labels=np.array([0, 1]))
    out = load_extra_npz(str(tmp_path / "f.npz"))
    assert out["images"].dtype == np.uint8 and np.all(out["images"] == 128)  # round(127.5) = 128


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"x": np.zeros((2, 4, 4, 3), np.uint8), "y": np.zeros(2, np.int64)}, "'images' and 'labels'"),
        ({"images": np.zeros((2, 3, 4, 4), np.uint8), "labels": np.zeros(2, np.int64)}, r"\[N, H, W, 3\]"),
        ({"images": np.zeros((2, 4, 4, 3), np.uint8), "labels": np.zeros(3, np.int64)}, "2 images but 3 labels"),
        ({"images": np.zeros((2, 4, 4, 3), np.uint8), "labels": np.array([0.0, 1.0])}, "integer"),
        ({"images": np.full((2, 4, 4, 3), 2.0), "labels": np.zeros(2, np.int64)}, r"\[0, 1\]"),
        ({"images": np.zeros((2, 4, 4, 3), np.uint8), "labels": np.array([0, 10])}, "num_classes=10"),
    ],
)
def test_extra_npz_errors(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=match):
        load_extra_npz(str(tmp_path / "bad.npz"), num_classes=10)


def test_extra_npz_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_extra_npz(str(tmp_path / "missing.npz"))


# ---------------------------------------------------------------- splits


def _toy_set(counts: list[int]) -> dict[str, np.ndarray]:
    """Labels with the given class counts; every other key encodes the sample id, to check rows stay aligned."""
    labels = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
    ids = np.arange(len(labels))
    return {
        "images": np.broadcast_to((ids % 256).astype(np.uint8)[:, None, None, None], (len(ids), 2, 2, 3)).copy(),
        "labels": labels,
        "masks": np.broadcast_to((ids % 256).astype(np.uint8)[:, None, None], (len(ids), 2, 2)).copy(),
        "ids": ids,
    }


def test_split_train_val_sizes_disjoint_and_stratified():
    data = _toy_set([40, 40, 20])
    train, val = split_train_val(data, val_size=10, seed=0)
    assert len(val["labels"]) == 10 and len(train["labels"]) == 90
    assert set(train["ids"]).isdisjoint(val["ids"])
    assert sorted(np.concatenate([train["ids"], val["ids"]])) == list(range(100))
    np.testing.assert_array_equal(np.bincount(val["labels"]), [4, 4, 2])
    for part in (train, val):
        assert set(part) == set(data)
        np.testing.assert_array_equal(part["labels"], data["labels"][part["ids"]])
        np.testing.assert_array_equal(part["images"][:, 0, 0, 0], part["ids"] % 256)
        np.testing.assert_array_equal(part["masks"][:, 1, 1], part["ids"] % 256)
    # A fraction gives the same count; a seed is deterministic; another seed differs.
    _, val_frac = split_train_val(data, val_size=0.1, seed=0)
    np.testing.assert_array_equal(val_frac["ids"], val["ids"])
    _, val_other = split_train_val(data, val_size=10, seed=1)
    assert not np.array_equal(val_other["ids"], val["ids"])


def test_split_train_val_errors():
    data = _toy_set([5, 5])
    for bad in (10, 1.5, -1, "3"):
        with pytest.raises(ValueError, match="val_size"):
            split_train_val(data, val_size=bad, seed=0)
    with pytest.raises(ValueError, match="same length"):
        split_train_val({"images": np.zeros((3, 2, 2, 3)), "labels": np.zeros(2, np.int64)}, 1, 0)
    with pytest.raises(ValueError, match="labels"):
        split_train_val({"images": np.zeros((3, 2, 2, 3))}, 1, 0)


def test_stratified_quota_rounds_to_nearest_counts():
    labels = np.repeat([0, 1, 2], [6, 3, 1])
    for seed in range(20):
        idx = stratified_indices(labels, 5, seed)
        counts = np.bincount(labels[idx], minlength=3)
        # Exact shares are 3, 1.5, 0.5: class 0 gets 3; the leftover unit goes to class 1 or 2.
        assert counts.sum() == 5 and counts[0] == 3 and sorted(counts[1:]) in ([1, 1], [0, 2]) and counts[1] >= 1
        assert len(set(idx)) == 5 and np.all(np.diff(idx) > 0)


def test_take_subset():
    data = _toy_set([30, 30, 30])
    assert len(take_subset(data, None, seed=0)["labels"]) == 90
    assert len(take_subset(data, 500, seed=0)["labels"]) == 90
    sub = take_subset(data, 30, seed=4)
    np.testing.assert_array_equal(np.bincount(sub["labels"]), [10, 10, 10])
    np.testing.assert_array_equal(sub["ids"], take_subset(data, 30, seed=4)["ids"])
    plain = take_subset(data, 30, seed=4, stratified=False)
    assert len(np.unique(plain["ids"])) == 30
    for bad in (0, -2, 2.5):
        with pytest.raises(ValueError, match="subset size n"):
            take_subset(data, bad, seed=0)


def test_concat_sets():
    a, b = _toy_set([2, 1]), _toy_set([1, 1])
    both = concat_sets(a, b)
    np.testing.assert_array_equal(both["labels"], [0, 0, 1, 0, 1])
    np.testing.assert_array_equal(both["ids"], [0, 1, 2, 0, 1])
    assert both["images"].shape == (5, 2, 2, 3) and both["images"].dtype == np.uint8
    with pytest.raises(ValueError, match="masks"):
        concat_sets(a, {k: v for k, v in b.items() if k != "masks"})
    with pytest.raises(ValueError, match="images"):
        concat_sets(a, {**b, "images": np.zeros((2, 3, 3, 3), np.uint8)})
    with pytest.raises(ValueError, match="images"):
        concat_sets(a, {**b, "images": b["images"].astype(np.float32)})
