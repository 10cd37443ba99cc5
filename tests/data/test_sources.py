"""The external data sources (dhat.data.sources): image folders, CIFAR, extra .npz files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dhat.data import load_extra_npz, load_image_folder, load_torchvision_cifar

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
    first_two = load_extra_npz(str(tmp_path / "a.npz"), max_images=2)
    np.testing.assert_array_equal(first_two["images"], images[:2])
    np.testing.assert_array_equal(first_two["labels"], [3, 1])
    with pytest.raises(ValueError, match="max_images"):
        load_extra_npz(str(tmp_path / "a.npz"), max_images=0)


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
