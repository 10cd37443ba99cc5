"""Passes over a whole data set go a batch at a time and give exactly what the whole-set computation gave."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from dhat.attention.attributions import attention_maps, iterate_attention_maps, stored_attention_maps
from dhat.attention.gradcam import grad_cam_batched, quantize_masks
from dhat.attention.masks import MaskRule, mask_statistics, stored_mask_statistics
from dhat.data import statistics
from dhat.engine.resume import array_digest
from dhat.models import build_model
from dhat.tensors import iterate_set, to_device_set

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (37, 12, 12, 3), dtype=np.uint8)
LABELS = RNG.integers(0, 4, 37).astype(np.int64)
SET = {"images": IMAGES, "labels": LABELS}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("small_cnn", 4, mean=[0.4] * 3, std=[0.25] * 3, width=4).eval()


def test_channel_statistics_are_exact_whatever_the_chunk(monkeypatch):
    pixels = IMAGES.reshape(-1, 3).astype(np.float64) / 255.0
    expected = (pixels.mean(axis=0).round(6).tolist(), pixels.std(axis=0).round(6).tolist())
    assert statistics.channel_statistics(IMAGES) == expected
    monkeypatch.setattr(statistics, "CHUNK_BYTES", 500)  # chunks of one image
    assert statistics.channel_statistics(IMAGES) == expected
    flat = np.full((3, 2, 2, 3), 9, np.uint8)
    assert statistics.channel_statistics(flat)[1] == [0.001] * 3  # no spread: the floor that keeps the division finite


def test_cpu_image_sets_are_views_and_batches_come_out_contiguous():
    data = to_device_set(SET, "cpu")
    assert data.images.data_ptr() == torch.from_numpy(IMAGES).data_ptr()  # no copy of the images
    batch = data.float_images(torch.tensor([3, 1, 30]))
    assert batch.is_contiguous() and batch.shape == (3, 3, 12, 12)
    np.testing.assert_array_equal(batch.numpy(), IMAGES[[3, 1, 30]].transpose(0, 3, 1, 2) / np.float32(255.0))
    for start, end, x, y in iterate_set(SET, "cpu", batch_size=10):
        assert torch.equal(x, data.float_images(slice(start, end))) and torch.equal(y, data.labels[start:end])


def test_stored_maps_equal_the_whole_set_maps(model):
    whole = to_device_set(SET, "cpu")
    expected = quantize_masks(grad_cam_batched(model, whole.float_images(), whole.labels, batch_size=8)).numpy()
    np.testing.assert_array_equal(stored_attention_maps("gradcam", model, SET, "cpu", batch_size=8), expected)
    chunks = list(iterate_attention_maps("gradcam", model, SET, "cpu", batch_size=16))
    assert [(s, e) for s, e, _ in chunks] == [(0, 16), (16, 32), (32, 37)]
    ig = attention_maps("integrated_gradients", model, whole.float_images(), whole.labels, batch_size=8, n_steps=4,
                        baseline="mean")
    stored = stored_attention_maps("integrated_gradients", model, SET, "cpu", batch_size=8, n_steps=4, baseline="mean")
    # The mean pixel comes from exact integer sums here and from a float32 mean there: the same up to rounding.
    assert np.abs(stored.astype(int) - quantize_masks(ig).numpy().astype(int)).max() <= 1


def test_stored_mask_statistics_equal_the_whole_set_statistics():
    maps = RNG.integers(0, 256, (50, 6, 6), dtype=np.uint8)
    truth = (RNG.random((50, 6, 6)) < 0.4).astype(np.uint8) * 255
    for rule in (MaskRule("absolute", omega=0.3), MaskRule("quantile", background_share=0.6)):
        expected = mask_statistics(torch.from_numpy(maps).float() / 255.0, rule, torch.from_numpy(truth >= 128))
        assert stored_mask_statistics(maps, rule, truth, chunk=7) == pytest.approx(expected, rel=1e-6)
        assert stored_mask_statistics(maps, rule, None, chunk=7)["coverage"] == expected["coverage"]


def test_the_data_digest_hashes_the_buffer_without_copying_and_keeps_its_value():
    for array in (IMAGES, IMAGES[:, ::2], LABELS, np.zeros((0, 3), np.uint8)):
        contiguous = np.ascontiguousarray(array)
        old = hashlib.sha256(f"{contiguous.dtype}{contiguous.shape}".encode())
        old.update(contiguous.tobytes())
        assert array_digest(array) == old.hexdigest()  # resumable states written before stay valid
