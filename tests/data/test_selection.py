"""Every source's selection keys: data.train_size / data.test_size, the validation hold-out, external masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dhat.data import load_image_folder, split_train_val
from dhat.data import registry as data_registry
from dhat.data.capabilities import DECORRELATED_VALIDATION, EXTERNAL_MASKS, TEST_VARIANTS, TRUE_MASKS
from dhat.data.registry import load_source, source_provides
from dhat.data.splits import subset_positions


def _folder(root: Path, per_class: dict[str, int], size: int = 6) -> None:
    """PNG images whose pixel values encode (class, index), so every image can be identified."""
    for split, count in per_class.items():
        for c, cls in enumerate(("ant", "bee", "cat")):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.new("RGB", (size, size), (40 * c, i, 7)).save(folder / f"{i:03d}.png")


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    _folder(tmp_path / "images", {"train": 20, "test": 6})
    return tmp_path / "images"


def _ids(image_set) -> set[tuple[int, int]]:
    return {(int(im[0, 0, 0]), int(im[0, 0, 1])) for im in image_set["images"]}


def test_without_sizes_an_image_folder_splits_exactly_as_before(folder):
    """Listing first and decoding only the kept files gives what decoding all and splitting gave."""
    data = {"source": "image_folder", "root": str(folder), "val_size": 6, "seed": 3}
    loaded = load_source(data)
    full_train, test, names = load_image_folder(str(folder))
    train, val = split_train_val(full_train, val_size=6, seed=3)
    for a, b in ((loaded.train, train), (loaded.val, val), (loaded.test, test)):
        np.testing.assert_array_equal(a["images"], b["images"])
        np.testing.assert_array_equal(a["labels"], b["labels"])
    assert loaded.class_names == names == ["ant", "bee", "cat"]


def test_train_and_test_sizes_are_stratified_seeded_subsets_and_only_they_are_decoded(folder, monkeypatch):
    decoded: list[int] = []
    real = data_registry.read_images
    monkeypatch.setattr(data_registry, "read_images", lambda files, *a, **k: decoded.append(len(files)) or real(files, *a, **k))
    data = {"source": "image_folder", "root": str(folder), "val_size": 6, "train_size": 9, "test_size": 0.5, "seed": 1}
    loaded = load_source(data)
    assert decoded == [9, 6, 9]  # train, validation, test: nothing else was read
    assert np.bincount(loaded.train["labels"]).tolist() == [3, 3, 3]  # 54 training images kept 9, 3 per class
    assert np.bincount(loaded.test["labels"]).tolist() == [3, 3, 3]  # half of 18 test images, 3 per class
    assert not _ids(loaded.train) & _ids(loaded.val)  # the subset comes from what the hold-out left
    again = load_source(data)
    np.testing.assert_array_equal(again.train["images"], loaded.train["images"])  # seeded
    other = load_source({**data, "seed": 2})
    assert _ids(other.train) != _ids(loaded.train)
    full = load_source({**data, "train_size": None, "test_size": None})
    assert _ids(loaded.train) < _ids(full.train) and _ids(loaded.test) < _ids(full.test)


@pytest.mark.parametrize(("size", "match"), [(100, "more samples than the 54"), (0, "keeps no samples"), (1.5, "fraction")])
def test_impossible_sizes_are_named(folder, size, match):
    with pytest.raises(ValueError, match=rf"data\.train_size.*{match}|{match}"):
        load_source({"source": "image_folder", "root": str(folder), "val_size": 6, "train_size": size})


def test_subset_positions_keeps_class_shares():
    labels = np.repeat([0, 1, 2, 3], [40, 20, 20, 20])
    kept = subset_positions(labels, 0.25, 0, "x")
    assert np.bincount(labels[kept]).tolist() == [10, 5, 5, 5] and np.all(np.diff(kept) > 0)
    np.testing.assert_array_equal(subset_positions(labels, None, 0, "x"), np.arange(100))


def test_embedded_sizes_subset_the_test_variants_alike():
    data = {"source": "embedded", "embedded": {"image_size": 8}, "train_size": 100, "test_size": 60}
    loaded = load_source(data)
    assert len(loaded.train["labels"]) == 100 and len(loaded.test["labels"]) == 60
    full = load_source({"source": "embedded", "embedded": {"image_size": 8}})
    for name, variant in loaded.variants.items():
        np.testing.assert_array_equal(variant["labels"], loaded.test["labels"], err_msg=name)
        # The same digits as the test subset: each variant row is the full variant's row at the same position.
        rows = [np.flatnonzero((full.test["images"] == image).all(axis=(1, 2, 3)))[0] for image in loaded.test["images"]]
        np.testing.assert_array_equal(variant["masks"], full.variants[name]["masks"][rows], err_msg=name)
    np.testing.assert_array_equal(loaded.val["images"], full.val["images"])  # the hold-out is untouched


def test_sources_declare_what_they_provide(folder):
    assert source_provides({"source": "embedded"}) == {TRUE_MASKS, TEST_VARIANTS, DECORRELATED_VALIDATION}
    assert source_provides({"source": "cifar10"}) == frozenset()
    assert source_provides({"source": "image_folder", "root": str(folder), "external_masks": "m"}) == {EXTERNAL_MASKS}
    with pytest.raises(ValueError, match="data.source='mnist'"):
        source_provides({"source": "mnist"})


# ---------------------------------------------------------------- external masks


def _mask_files(images: Path, masks: Path, value_of, suffix: str = ".png", size: int = 6) -> None:
    for image in sorted((images / "train").rglob("*.png")):
        target = masks / image.relative_to(images).with_suffix(suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        array = np.full((size, size), value_of(image), np.uint8)
        if suffix == ".npy":
            np.save(target, array)
        else:
            Image.fromarray(array, mode="L").save(target)


def test_external_mask_files_follow_their_images_through_split_and_subset(folder, tmp_path):
    # Each mask's value is its image's index within the class, which the image's green channel also holds.
    _mask_files(folder, tmp_path / "masks", lambda image: int(image.stem) + 2)
    data = {"source": "image_folder", "root": str(folder), "val_size": 6, "train_size": 12,
            "external_masks": str(tmp_path / "masks")}
    loaded = load_source(data)
    masks = loaded.train["external_masks"]
    assert masks.shape == (12, 6, 6) and masks.dtype == np.uint8
    np.testing.assert_array_equal(masks[:, 0, 0], loaded.train["images"][:, 0, 0, 1].astype(np.uint8) + 2)
    assert "external_masks" not in loaded.val and "external_masks" not in loaded.test


def test_external_masks_are_resized_with_their_images_and_binary_masks_become_255(folder, tmp_path):
    _mask_files(folder, tmp_path / "masks", lambda image: 1, suffix=".npy")  # 0/1 masks: 1 = foreground
    loaded = load_source({"source": "image_folder", "root": str(folder), "image_size": 4,
                          "external_masks": str(tmp_path / "masks")})
    assert loaded.train["external_masks"].shape[1:] == (4, 4) and (loaded.train["external_masks"] == 255).all()


def test_external_mask_errors_name_the_file_and_the_fix(folder, tmp_path):
    _mask_files(folder, tmp_path / "masks", lambda image: 200)
    next((tmp_path / "masks" / "train" / "bee").glob("*.png")).unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 54 training images have no mask file \(e\.g\. train/bee/"):
        load_source({"source": "image_folder", "root": str(folder), "val_size": 6, "external_masks": str(tmp_path / "masks")})
    _mask_files(folder, tmp_path / "big", lambda image: 200, size=8)
    with pytest.raises(ValueError, match="the mask is 8x8 but its image is 6x6"):
        load_source({"source": "image_folder", "root": str(folder), "external_masks": str(tmp_path / "big")})
    _mask_files(folder, tmp_path / "rgb", lambda image: 200)
    for path in (tmp_path / "rgb").rglob("*.png"):
        Image.new("RGB", (6, 6)).save(path)
    with pytest.raises(ValueError, match="single-channel"):
        load_source({"source": "image_folder", "root": str(folder), "external_masks": str(tmp_path / "rgb")})


def test_external_mask_arrays_align_with_the_training_pool(tmp_path):
    data = {"source": "embedded", "embedded": {"image_size": 8}}
    pool = load_source(data).train
    masks = (np.arange(len(pool["labels"])) % 2 == 0)[:, None, None] & np.ones((1, 8, 8), bool)  # boolean masks
    np.save(tmp_path / "masks.npy", masks)
    loaded = load_source({**data, "train_size": 50, "external_masks": str(tmp_path / "masks.npy")})
    kept = [np.flatnonzero((pool["images"] == image).all(axis=(1, 2, 3)))[0] for image in loaded.train["images"]]
    np.testing.assert_array_equal(loaded.train["external_masks"], masks[kept].astype(np.uint8) * 255)
    np.save(tmp_path / "short.npy", masks[:-1])
    with pytest.raises(ValueError, match=rf"{len(pool['labels']) - 1} masks but the source's training pool has"):
        load_source({**data, "external_masks": str(tmp_path / "short.npy")})
    np.save(tmp_path / "objects.npy", np.array([None] * 3, dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="cannot be read as a mask array.*never unpickled"):
        load_source({**data, "external_masks": str(tmp_path / "objects.npy")})
    with pytest.raises(ValueError, match="has no image files to mirror"):
        load_source({**data, "external_masks": str(tmp_path)})


def test_an_npz_that_names_its_files_is_matched_by_path(folder, tmp_path):
    files = [p.relative_to(folder).as_posix() for p in sorted((folder / "train").rglob("*.png"))][::-1]  # another order
    values = np.array([int(Path(f).stem) + 10 for f in files], np.uint8)
    np.savez(tmp_path / "masks.npz", masks=np.broadcast_to(values[:, None, None], (len(files), 6, 6)), files=np.array(files))
    loaded = load_source({"source": "image_folder", "root": str(folder), "val_size": 6,
                          "external_masks": str(tmp_path / "masks.npz")})
    np.testing.assert_array_equal(loaded.train["external_masks"][:, 0, 0], loaded.train["images"][:, 0, 0, 1] + 10)
    np.savez(tmp_path / "partial.npz", masks=np.zeros((2, 6, 6), np.uint8), files=np.array(files[:2]))
    with pytest.raises(ValueError, match="training images have no mask in 'files'"):
        load_source({"source": "image_folder", "root": str(folder), "external_masks": str(tmp_path / "partial.npz")})


def test_an_image_folder_under_auto_counts_the_free_memory_of_the_runs_device(folder, monkeypatch):
    """The run's device reaches the storage choice: a GPU too small for the decoded splits makes them stream."""
    asked = []

    def free(device):
        asked.append(device)
        return None if device == "cpu" else 1024  # bytes: far below the splits' decoded size

    monkeypatch.setattr(data_registry, "device_free_bytes", free)
    data = {"source": "image_folder", "root": str(folder), "val_size": 6}
    assert load_source(data, "cpu").storage.mode == "memory"
    on_gpu = load_source(data, "cuda:1").storage
    assert on_gpu.mode == "stream" and "free on the GPU" in on_gpu.reason
    assert load_source({**data, "storage": "memory"}, "cuda:1").storage.mode == "memory"  # asked for: not counted
    assert asked == ["cpu", "cuda:1"]
