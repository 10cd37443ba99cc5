"""Grad-CAM maps stored at the feature map's resolution (mask_model.map_resolution: feature).

They must give training exactly what the per-pixel maps give: the same float maps per batch,
hence the same crops, the same statistics and the same trained weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dhat.attention.gradcam import dequantize_masks, expand_cam, grad_cam, grad_cam_raw
from dhat.attention.masks import MaskRule, stored_mask_statistics
from dhat.attention.reference_model import MaskModelSettings
from dhat.checkpoints import load_classifier
from dhat.data.files import FileImages
from dhat.data.loading import to_training_set
from dhat.engine.augment import random_crop_flip, random_resized_crop_flip
from dhat.engine.fitting import fit
from dhat.maps import is_feature_maps, pixel_maps, pixel_maps_uint8
from dhat.pipelines.mask_precomputation.nodes import compute_attention_masks
from dhat.tensors import to_device_set
from tests.data.test_streaming import _write_folder

SIZE = 16
INFO = {"num_classes": 3, "image_shape": [SIZE, SIZE, 3], "mean": [0.5] * 3, "std": [0.25] * 3}


def _data(n: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)
    images[:, 4:12, 4:12, 0] = (labels * 120)[:, None, None]  # a class cue in the centre
    return images, labels


@pytest.fixture(scope="module")
def mask_model() -> tuple[dict, dict]:
    images, labels = _data()
    train = {"images": images[:40], "labels": labels[:40]}
    best, _, _ = fit(train, {"images": images[40:], "labels": labels[40:]}, None, INFO, {"name": "natural"},
                     {"name": "small_cnn", "width": 4},
                     {"epochs": 2, "batch_size": 8, "val_steps": 0, "select_on": "val_clean", "progress": False}, "cpu")
    return best, train


def _maps(mask_model, resolution: str):
    best, train = mask_model
    return compute_attention_masks(best, train, {"batch_size": 7, "map_resolution": resolution}, "cpu")


def test_expanding_the_raw_map_gives_grad_cam(mask_model):
    best, train = mask_model
    model = load_classifier(best, "cpu")
    x = to_device_set(train, "cpu").float_images()[:9]
    y = torch.as_tensor(train["labels"][:9])
    raw = grad_cam_raw(model, x, y)
    assert raw.shape[1:] != x.shape[-2:] and raw.min() >= 0
    assert torch.equal(expand_cam(raw, x.shape[-2:]), grad_cam(model, x, y))
    # Per image: a map expands to the same values alone as in its batch.
    assert torch.equal(expand_cam(raw[3:4], x.shape[-2:])[0], expand_cam(raw, x.shape[-2:])[3])


def test_feature_maps_expand_to_exactly_the_stored_pixel_maps(mask_model):
    pixel, pixel_quality = _maps(mask_model, "image")
    feature, feature_quality = _maps(mask_model, "feature")
    assert pixel["masks"].dtype == np.uint8 and pixel["masks"].shape == (40, SIZE, SIZE)
    assert feature["masks"].dtype == np.float32 and feature["masks"].shape[0] == 40
    assert feature["masks"].shape[1] < SIZE and is_feature_maps(feature["masks"])
    assert feature["masks"].nbytes < pixel["masks"].nbytes
    assert np.array_equal(pixel_maps_uint8(feature["masks"], (SIZE, SIZE)), pixel["masks"])
    on_device = pixel_maps(torch.from_numpy(feature["masks"]), (SIZE, SIZE))
    assert torch.equal(on_device, dequantize_masks(torch.from_numpy(pixel["masks"])))
    drop = {"map_resolution", "stored_shape"}
    assert {k: v for k, v in feature_quality.items() if k not in drop} == {
        k: v for k, v in pixel_quality.items() if k not in drop}
    assert feature_quality["stored_shape"] == list(feature["masks"].shape[1:])
    for rule in (MaskRule("quantile", background_share=0.4), MaskRule("absolute", omega=0.3)):
        truth = (pixel["masks"] > 100).astype(np.uint8) * 255
        assert stored_mask_statistics(feature["masks"], rule, truth, chunk=9) == stored_mask_statistics(
            pixel["masks"], rule, truth, chunk=9)


def test_the_batch_crop_of_an_expanded_map_is_the_crop_of_the_stored_pixel_map(mask_model):
    """The crop comes after the expansion, so both augmentations see today's per-pixel values."""
    pixel, _ = _maps(mask_model, "image")
    feature, _ = _maps(mask_model, "feature")
    images = to_device_set(mask_model[1], "cpu").float_images()
    stored = dequantize_masks(torch.from_numpy(pixel["masks"]))
    expanded = pixel_maps(torch.from_numpy(feature["masks"]), (SIZE, SIZE))
    for augment in (lambda m, g: random_crop_flip(images, m, padding=3, flip=True, generator=g),
                    lambda m, g: random_resized_crop_flip(images, m, generator=g)):
        a = augment(stored, torch.Generator().manual_seed(1))
        b = augment(expanded, torch.Generator().manual_seed(1))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("augment", ["crop_flip", "resized_crop"])
def test_dhat_trains_to_the_same_weights_on_feature_and_pixel_maps(mask_model, augment):
    _, train = mask_model
    images, labels = _data()
    val = {"images": images[40:], "labels": labels[40:]}
    method = {"name": "dhat", "params": {"attack": {"steps": 2}, "inverse": {"steps": 1}}}
    training = {"epochs": 2, "batch_size": 16, "val_steps": 1, "progress": False, "augment": augment, "flip": True}
    runs = [fit(train, val, _maps(mask_model, r)[0], INFO, method, {"name": "small_cnn", "width": 4}, training, "cpu")
            for r in ("image", "feature")]
    timing = [c for c in runs[0][2].columns if c.endswith("seconds")]
    assert runs[0][2].drop(columns=timing).equals(runs[1][2].drop(columns=timing))
    for key, value in runs[0][0]["state_dict"].items():
        assert torch.equal(runs[1][0]["state_dict"][key], value), key
    assert runs[0][0]["metadata"]["masks"] == runs[1][0]["metadata"]["masks"]


def test_a_streamed_set_expands_feature_maps_like_a_set_in_memory(tmp_path: Path, mask_model):
    names, pixels, labels = _write_folder(tmp_path, 12, seed=3, size=SIZE)
    raw = np.random.default_rng(0).random((12, 4, 4)).astype(np.float32)
    streamed = to_training_set({"images": FileImages(tmp_path, names, None), "labels": labels}, "cpu", masks=raw)
    memory = to_training_set({"images": pixels, "labels": labels}, "cpu", masks=raw)
    index = torch.tensor([5, 0, 11])
    assert torch.equal(streamed.float_masks(index), memory.float_masks(index))
    assert streamed.float_masks(index).shape == (3, SIZE, SIZE)


def test_maps_that_do_not_fit_the_images_are_refused_by_name():
    images, labels = _data(6)
    with pytest.raises(ValueError, match=r"train_set: feature-resolution maps must be float32 \[6, h, w\]"):
        to_device_set({"images": images, "labels": labels}, "cpu", masks=np.zeros((5, 4, 4), np.float32), name="train_set")
    with pytest.raises(ValueError, match=r"masks must be uint8 with shape \(6, 16, 16\)"):
        to_device_set({"images": images, "labels": labels}, "cpu", masks=np.zeros((6, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="mask_model.map_resolution must be one of image, feature"):
        MaskModelSettings.from_dict({"map_resolution": "7x7"})
