"""Stream mode: images decoded from their files on demand (dhat.data.files) and fed by a DataLoader (dhat.data.loading).

The values are checked against memory mode, which decodes the same files into one array:
a streamed row, batch or whole training run must equal its memory-mode twin exactly.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dhat.data.files
import dhat.data.registry
import dhat.tensors
from dhat.data.external_masks import FileMasks
from dhat.data.files import FileImages, decode_image, listing_digest
from dhat.data.loading import DecodeDataset, LoaderSettings, StreamImageSet, batch_loader, to_training_set
from dhat.data.registry import load_source
from dhat.data.sources import read_images
from dhat.data.statistics import channel_statistics
from dhat.data.storage import choose_storage
from dhat.engine.fitting import fit
from dhat.engine.recipe import TrainingConfig
from dhat.engine.training import _shuffled_batches
from dhat.extras.datasets import ImageSetDataset
from dhat.stats.sweeps import score_checkpoint
from dhat.tensors import DeviceImageSet, iterate_set, to_device_set

SIZE = 8


def _write_folder(root: Path, n: int, seed: int = 0, size: int = SIZE) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``n`` random PNG images (lossless) with a learnable colour cue per class; relative names, pixels, labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    pixels = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    pixels[..., 0] = (labels * 100)[:, None, None]
    names = []
    for i, (image, label) in enumerate(zip(pixels, labels, strict=True)):
        name = f"c{label}/{i:04d}.png"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / name)
        names.append(name)
    return names, pixels, labels.astype(np.int64)


@pytest.fixture()
def folder(tmp_path: Path) -> tuple[Path, list[str], np.ndarray, np.ndarray]:
    names, pixels, labels = _write_folder(tmp_path, 64)
    return tmp_path, names, pixels, labels


def test_rows_decode_as_the_whole_array_does(folder):
    root, names, pixels, _ = folder
    images = FileImages(root, names, None)
    assert images.shape == (64, SIZE, SIZE, 3) and images.dtype == np.uint8 and images.ndim == 4 and len(images) == 64
    assert np.array_equal(images[5], pixels[5]) and np.array_equal(images[-1], pixels[-1])
    assert np.array_equal(images[3:9], pixels[3:9])
    order = np.array([7, 2, 2, 40])
    assert np.array_equal(images[order], pixels[order])
    assert np.array_equal(images.subset(order)[:], pixels[order])
    assert np.array_equal(np.asarray(images), read_images([root / n for n in names], None))
    with pytest.raises(IndexError):
        images[64]
    with pytest.raises(IndexError):
        images[np.array([0, 64])]


def test_resized_rows_equal_memory_modes_decoding(folder):
    root, names, _, _ = folder
    images = FileImages(root, names, 13)
    assert images.shape == (64, 13, 13, 3)
    assert np.array_equal(images[:], read_images([root / n for n in names], 13))
    assert np.array_equal(images[10], decode_image(root / names[10], 13))


def test_a_file_of_another_size_is_named_with_the_fix(folder):
    root, names, _, _ = folder
    Image.new("RGB", (5, 9)).save(root / names[3])
    with pytest.raises(ValueError, match=rf"{names[3]} decodes to 5x9 .* set data.image_size"):
        FileImages(root, names, None)[3]


def test_materialising_a_set_too_large_for_memory_says_to_stream(folder, monkeypatch):
    root, names, _, _ = folder
    monkeypatch.setattr(dhat.tensors, "MATERIALISE_LIMIT_BYTES", 1000)
    with pytest.raises(MemoryError, match="data.storage: stream"):
        np.asarray(FileImages(root, names, None))


def test_the_listing_digest_follows_files_sizes_and_resize_not_the_folder(folder, tmp_path):
    root, names, _, _ = folder
    digest = FileImages(root, names, None).digest()
    sizes = [(root / n).stat().st_size for n in names]
    assert digest == listing_digest(names, sizes, None)
    assert listing_digest(names, sizes, 32) != digest
    assert listing_digest(names[:-1], sizes[:-1], None) != digest
    assert listing_digest(names[::-1], sizes[::-1], None) != digest
    moved = tmp_path.parent / (tmp_path.name + "_moved")
    root.rename(moved)
    assert FileImages(moved, names, None, shape=(SIZE, SIZE, 3)).digest() == digest
    Image.new("RGB", (SIZE, SIZE), (1, 2, 3)).save(moved / names[0])  # re-encoded: another byte count
    assert FileImages(moved, names, None, shape=(SIZE, SIZE, 3)).digest() != digest


def test_the_dataset_pickles_without_pixels(folder):
    root, names, pixels, _ = folder
    dataset = DecodeDataset(FileImages(root, names, None))
    restored = pickle.loads(pickle.dumps(dataset))
    assert len(pickle.dumps(dataset)) < pixels.nbytes
    assert torch.equal(restored[4], torch.from_numpy(pixels[4]))


@pytest.mark.parametrize("workers", [0, 2])
def test_the_loader_yields_the_drawn_batches_in_order_and_leaves_the_global_rng_alone(folder, workers):
    root, names, pixels, _ = folder
    loader, sampler = batch_loader(FileImages(root, names, None), LoaderSettings(workers=workers), seed=3)
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    for _ in range(2):  # two epochs through the same (persistent) workers
        batches = _shuffled_batches(len(names), 16, generator)
        sampler.set_batches(batches)
        got = list(loader)
        assert len(got) == len(batches)
        for batch, images in zip(batches, got, strict=True):
            assert torch.equal(images, torch.from_numpy(pixels[batch.numpy()]))
    assert torch.equal(torch.get_rng_state(), before)


def test_a_streamed_set_gives_memory_modes_floats(folder):
    root, names, pixels, labels = folder
    masks = np.random.default_rng(1).integers(0, 256, (64, SIZE, SIZE), dtype=np.uint8)
    memory = to_training_set({"images": pixels, "labels": labels}, "cpu", masks=masks)
    stream = to_training_set({"images": FileImages(root, names, None), "labels": labels}, "cpu", masks=masks)
    assert isinstance(memory, DeviceImageSet) and isinstance(stream, StreamImageSet) and len(stream) == 64
    index = torch.tensor([9, 1, 33])
    assert torch.equal(stream.float_images(index), memory.float_images(index))
    assert torch.equal(stream.float_images(slice(0, 10)), memory.float_images(slice(0, 10)))
    batches = _shuffled_batches(64, 20, torch.Generator().manual_seed(0))
    for (i_a, x_a, m_a), (i_b, x_b, m_b) in zip(memory.epoch_batches(batches, True), stream.epoch_batches(batches, True),
                                                strict=True):
        assert torch.equal(i_a, i_b) and torch.equal(x_a, x_b) and torch.equal(m_a, m_b)
        assert x_b.is_contiguous()
    assert all(m is None for _, _, m in stream.epoch_batches(batches, False))
    with pytest.raises(ValueError, match="masks must be uint8 with shape"):
        to_training_set({"images": FileImages(root, names, None), "labels": labels}, "cpu", masks=masks[:, :4])


def test_loader_settings_are_checked_by_name():
    for bad in ({"loader_workers": -1}, {"loader_workers": "many"}, {"loader_prefetch": 0}):
        with pytest.raises(ValueError, match=f"training.{next(iter(bad))}"):
            TrainingConfig.from_dict(bad)
    assert TrainingConfig.from_dict({"loader_workers": 3}).loader_settings().workers == 3


def _history(frame):
    return frame.drop(columns=[c for c in frame.columns if c.endswith("seconds")]).to_dict("list")


@pytest.mark.parametrize(("method", "worker_counts", "augment"), [
    ({"name": "pgd_at", "params": {"attack": {"steps": 2}}}, (0, 2), "crop_flip"),
    ({"name": "pgd_at", "params": {"attack": {"steps": 1}}}, (0,), "resized_crop"),
    ({"name": "sglr", "params": {"attack": {"steps": 2}, "start_fraction": 0.5}}, (0,), "crop_flip"),
    ({"name": "cfa", "params": {"base_method": "pgd_at", "base": {"attack": {"steps": 1}}, "ccm_start_epoch": 1,
                               "fawa_threshold": 0.0, "validation": {"steps": 1}}}, (0,), "crop_flip")])
def test_training_from_files_equals_training_from_memory(tmp_path, method, worker_counts, augment, single_thread):
    """Same seed, same CPU: the streamed run (in-process, and with 2 decoding workers) has memory mode's weights and
    history, with either augmentation; SGLR's per-sample soft labels follow the same indices and CFA's per-class
    validation (its weight averaging's trigger) reads the streamed validation split."""
    names, pixels, labels = _write_folder(tmp_path, 72, seed=4)
    info = {"num_classes": 3, "image_shape": [SIZE, SIZE, 3], "mean": [0.5] * 3, "std": [0.25] * 3}
    training = {"epochs": 2, "batch_size": 16, "val_steps": 2, "progress": False, "crop_padding": 1, "flip": True,
                "augment": augment}
    model = {"name": "small_cnn", "width": 4}

    def run(images, val_images, workers):
        return fit({"images": images, "labels": labels[:60]}, {"images": val_images, "labels": labels[60:]}, None, info,
                   method, model, {**training, "loader_workers": workers}, "cpu")

    files = FileImages(tmp_path, names, None)
    memory = run(pixels[:60], pixels[60:], 0)
    for workers in worker_counts:
        streamed = run(files.subset(slice(0, 60)), files.subset(slice(60, None)), workers)
        assert _history(streamed[2]) == _history(memory[2])
        for part in (0, 1):
            for key, value in memory[part]["state_dict"].items():
                assert torch.equal(streamed[part]["state_dict"][key], value), key


def test_data_parallel_training_needs_memory_mode(folder):
    root, names, _, labels = folder
    files = FileImages(root, names, None)
    with pytest.raises(ValueError, match="data.storage: memory or training.devices: 1"):
        fit({"images": files, "labels": labels}, {"images": files, "labels": labels}, None,
            {"num_classes": 3, "image_shape": [SIZE, SIZE, 3], "mean": [0.5] * 3, "std": [0.25] * 3},
            {"name": "pgd_at"}, {"name": "small_cnn", "width": 4}, {"epochs": 1, "devices": 2}, "cpu")


# ---------------------------------------------------------------- the storage mode and the index


def test_auto_storage_keeps_memory_mode_while_the_data_fit_in_half_the_available_memory():
    gib = 2**30
    assert choose_storage("auto", "image_folder", 3 * gib, available=8 * gib).mode == "memory"
    over = choose_storage("auto", "image_folder", 5 * gib, available=8 * gib)
    assert over.mode == "stream" and "over half of the 8.0 GiB available on the host" in over.reason
    assert choose_storage("memory", "image_folder", 500 * gib, available=8 * gib).mode == "memory"
    assert choose_storage("auto", "cifar10", 500 * gib, available=1).mode == "memory"  # arrays already
    with pytest.raises(ValueError, match="data.storage: stream needs image files"):
        choose_storage("stream", "embedded", 0)
    with pytest.raises(ValueError, match="data.storage must be one of auto, memory, stream"):
        choose_storage("disk", "image_folder", 0)


def test_auto_storage_on_a_gpu_also_needs_the_training_split_to_fit_half_the_device():
    """Memory mode puts the training split on the device: 40 GiB fit a 256 GiB host, not an 80 GiB GPU with 60 free."""
    from dhat.data import storage  # noqa: PLC0415

    gib = 2**30
    host, gpu = 256 * gib, 60 * gib
    fits = choose_storage("auto", "image_folder", 20 * gib, available=host, device_free=gpu)
    assert fits.mode == "memory" and "and of the 60.0 GiB free on the GPU" in fits.reason
    over = choose_storage("auto", "image_folder", 40 * gib, available=host, device_free=gpu)
    assert over.mode == "stream" and over.reason.endswith("over half of the 60.0 GiB free on the GPU")
    assert choose_storage("auto", "image_folder", 40 * gib, available=host).mode == "memory"  # a CPU run
    assert storage.device_free_bytes("cpu") is None


def test_a_streamed_split_is_stored_as_its_index_and_loads_back(folder, tmp_path):
    root, names, pixels, labels = folder
    streamed = {"images": FileImages(root, names, 12), "labels": labels}
    path = tmp_path / "out" / "train_set.npz"
    ImageSetDataset(str(path)).save(streamed)
    with np.load(path, allow_pickle=False) as archive:
        assert "images" not in archive.files and archive["files"].shape == (64,)
    assert path.stat().st_size < 4096  # names and labels, no pixels
    loaded = ImageSetDataset(str(path)).load()
    assert isinstance(loaded["images"], FileImages) and loaded["images"].shape == (64, 12, 12, 3)
    assert np.array_equal(loaded["labels"], labels) and loaded["images"].files == names
    assert np.array_equal(loaded["images"][7], decode_image(root / names[7], 12))
    in_memory = {"images": pixels, "labels": labels}
    ImageSetDataset(str(path)).save(in_memory)
    assert np.array_equal(ImageSetDataset(str(path)).load()["images"], pixels)


def test_image_folder_ingestion_in_stream_mode_decodes_nothing_but_the_first_image(tmp_path, monkeypatch):
    for split, n in (("train", 40), ("test", 12)):
        _write_folder(tmp_path / split, n, seed=len(split))
    decoded = []
    original = dhat.data.files.decode_image

    def counting(path, image_size):
        decoded.append(path)
        return original(path, image_size)

    monkeypatch.setattr(dhat.data.files, "decode_image", counting)
    monkeypatch.setattr(dhat.data.registry, "decode_image", counting)
    data = {"source": "image_folder", "root": str(tmp_path), "val_size": 8, "storage": "stream", "image_size": 10}
    loaded = load_source(data)
    assert len(decoded) == 1 and loaded.storage.mode == "stream"
    assert [len(s["labels"]) for s in (loaded.train, loaded.val, loaded.test)] == [32, 8, 12]
    memory = load_source({**data, "storage": "memory"})
    for streamed, decoded_set in ((loaded.train, memory.train), (loaded.val, memory.val), (loaded.test, memory.test)):
        assert np.array_equal(streamed["images"][:], decoded_set["images"])
        assert np.array_equal(streamed["labels"], decoded_set["labels"])


def test_whole_set_passes_decode_a_streamed_set_chunk_by_chunk_to_the_same_batches(folder):
    root, names, pixels, labels = folder
    streamed = list(iterate_set({"images": FileImages(root, names, None), "labels": labels}, "cpu", 24))
    memory = list(iterate_set({"images": pixels, "labels": labels}, "cpu", 24))
    assert [(s, e) for s, e, _, _ in streamed] == [(0, 24), (24, 48), (48, 64)]
    for (_, _, x_a, y_a), (_, _, x_b, y_b) in zip(streamed, memory, strict=True):
        assert torch.equal(x_a, x_b) and torch.equal(y_a, y_b)
    assert channel_statistics(FileImages(root, names, None)) == channel_statistics(pixels)


# ---------------------------------------------------------------- steps that hold a bounded subset


def test_steps_that_hold_a_streamed_set_work_on_its_bounded_subset_and_name_the_bound(folder, monkeypatch):
    """A sweep's scoring on the evaluation's subset gives memory mode's numbers; an unbounded one is refused by name."""
    root, names, pixels, labels = folder
    files = FileImages(root, names, None)
    info = {"num_classes": 3, "image_shape": [SIZE, SIZE, 3], "mean": [0.5] * 3, "std": [0.25] * 3}
    checkpoint, _, _ = fit({"images": pixels, "labels": labels}, {"images": pixels, "labels": labels}, None, info,
                           {"name": "natural"}, {"name": "small_cnn", "width": 4},
                           {"epochs": 1, "batch_size": 8, "val_steps": 0, "select_on": "val_clean", "progress": False},
                           "cpu")
    monkeypatch.setattr(dhat.tensors, "MATERIALISE_LIMIT_BYTES", files.nbytes // 2)
    evaluation = {"n_eval": len(names) // 4}
    torch.manual_seed(0)
    streamed = score_checkpoint(checkpoint, {"images": files, "labels": labels}, evaluation, ["pgd10"], "cpu")
    torch.manual_seed(0)
    memory = score_checkpoint(checkpoint, {"images": pixels, "labels": labels}, evaluation, ["pgd10"], "cpu")
    assert streamed == memory and streamed["n_images"] == len(names) // 4 and len(streamed["correct"]["pgd10"]) == 16
    with pytest.raises(ValueError, match=r"test_set: this step holds its 64 images .* set evaluation.n_eval to a bounded"):
        score_checkpoint(checkpoint, {"images": files, "labels": labels}, {"n_eval": None}, ["pgd10"], "cpu")
    with pytest.raises(ValueError, match="set transfer.n_images to a bounded subset"):
        to_device_set({"images": files, "labels": labels}, "cpu", name="test_set", bound="transfer.n_images")


# ---------------------------------------------------------------- per-image mask files in stream mode


def _mask_folder(images: Path, masks: Path, seed: int = 0) -> None:
    """A random greyscale PNG mask (6x6, resized with its image) beside every training image."""
    rng = np.random.default_rng(seed)
    for image in sorted((images / "train").rglob("*.png")):
        target = masks / image.relative_to(images)
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8), mode="L").save(target)


def test_mask_files_stay_files_in_stream_mode_and_train_dhat_as_in_memory_mode(tmp_path, single_thread):
    """External masks as a folder: stream mode reads them per batch (in the loader's workers) and DHAT trained on them
    has memory mode's weights; the split's index keeps them as an index too."""
    for split, n in (("train", 56), ("test", 8)):
        _write_folder(tmp_path / "images" / split, n, seed=len(split))
    _mask_folder(tmp_path / "images", tmp_path / "masks")
    data = {"source": "image_folder", "root": str(tmp_path / "images"), "val_size": 8, "image_size": SIZE,
            "external_masks": str(tmp_path / "masks")}
    memory, streamed = (load_source({**data, "storage": mode}) for mode in ("memory", "stream"))
    masks = streamed.train["external_masks"]
    assert isinstance(masks, FileMasks) and masks.shape == (48, SIZE, SIZE)
    assert np.array_equal(masks[:], memory.train["external_masks"])  # read and resized exactly as memory mode does
    ImageSetDataset(str(tmp_path / "train_set.npz")).save(streamed.train)
    reloaded = ImageSetDataset(str(tmp_path / "train_set.npz")).load()
    assert isinstance(reloaded["external_masks"], FileMasks) and reloaded["external_masks"].digest() == masks.digest()
    info = {"num_classes": 3, "image_shape": [SIZE, SIZE, 3], "mean": [0.5] * 3, "std": [0.25] * 3}
    method = {"name": "dhat", "params": {"mask_source": "external", "attack": {"steps": 1}, "inverse": {"steps": 1}}}
    training = {"epochs": 2, "batch_size": 16, "val_steps": 1, "progress": False, "crop_padding": 1, "flip": True}

    def run(train, val, workers):
        return fit(train, val, None, info, method, {"name": "small_cnn", "width": 4},
                   {**training, "loader_workers": workers}, "cpu")

    expected = run(memory.train, memory.val, 0)
    for workers in (0, 2):
        got = run(reloaded, streamed.val, workers)
        assert _history(got[2]) == _history(expected[2]) and got[0]["metadata"]["masks"] == expected[0]["metadata"]["masks"]
        for key, value in expected[0]["state_dict"].items():
            assert torch.equal(got[0]["state_dict"][key], value), key
