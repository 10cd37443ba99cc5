"""Tests of the digits-on-textures benchmark, checked against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from dhat.data import NUM_STYLES, make_digit_texture_benchmark, render_textures
from dhat.data.textures import bilinear_resize

SPLITS = ("train", "val", "test", "test_aligned", "test_random", "test_foreground_only", "test_background_only",
          "test_in_distribution", "val_decorrelated")
TEST_VARIANTS = tuple(name for name in SPLITS if name.startswith("test"))


@pytest.fixture(scope="module")
def bench() -> dict[str, dict[str, np.ndarray]]:
    """Built once for the module, so read-only: a test that wrote into it would change later tests."""
    data = make_digit_texture_benchmark(seed=0)
    for image_set in data.values():
        for array in image_set.values():
            array.flags.writeable = False
    return data


def _torch_masks(image_size: int, threshold: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    """Foreground masks of all 1,797 digits, computed with torch's bilinear upsampling."""
    digits = load_digits()
    x = torch.from_numpy(digits.images / 16.0).unsqueeze(1)  # float64, [N, 1, 8, 8]
    up = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)[:, 0]
    return (up.clamp(0, 1) >= threshold).numpy().astype(np.uint8) * 255, digits.target.astype(np.int64)


def _signatures(masks: np.ndarray, labels: np.ndarray) -> list[tuple[int, bytes]]:
    return sorted((int(y), m.tobytes()) for m, y in zip(masks, labels, strict=True))


def test_shapes_dtypes_sizes_and_value_ranges(bench):
    assert set(bench) == set(SPLITS)
    sizes = {"train": 1797 - 450 - 150, "val": 150, "val_decorrelated": 150}
    for name, image_set in bench.items():
        n = sizes.get(name, 450)
        assert set(image_set) == {"images", "labels", "masks", "styles"}
        assert image_set["images"].shape == (n, 16, 16, 3) and image_set["images"].dtype == np.uint8
        assert image_set["labels"].shape == (n,) and image_set["labels"].dtype == np.int64
        assert image_set["masks"].shape == (n, 16, 16) and image_set["masks"].dtype == np.uint8
        assert image_set["styles"].shape == (n,) and image_set["styles"].dtype == np.int64
        # Values: every class in every split, styles in range (-1: no background), binary masks.
        np.testing.assert_array_equal(np.unique(image_set["labels"]), np.arange(10))
        expected_styles = {-1} if name == "test_foreground_only" else set(range(NUM_STYLES))
        assert set(np.unique(image_set["styles"])) == expected_styles
        expected_masks = {0} if name == "test_background_only" else {0, 255}
        assert set(np.unique(image_set["masks"])) == expected_masks
        assert np.ptp(image_set["images"]) > 150  # uint8 conversion keeps the full range, no clipping to a constant


def test_resize_matches_torch_bilinear():
    rng = np.random.default_rng(3)
    small = rng.random((4, 8, 8))
    for size in (16, 13, 24):
        expected = F.interpolate(torch.from_numpy(small)[:, None], size=(size, size), mode="bilinear",
                                 align_corners=False)[:, 0].numpy()
        np.testing.assert_allclose(bilinear_resize(small, size), expected, atol=1e-12)


def test_splits_partition_all_digits_and_masks_are_the_strokes(bench):
    """train + val + test hold every digit exactly once, with masks equal to torch's thresholded upsampling."""
    masks, labels = _torch_masks(16)
    ours_masks = np.concatenate([bench[k]["masks"] for k in ("train", "val", "test")])
    ours_labels = np.concatenate([bench[k]["labels"] for k in ("train", "val", "test")])
    assert _signatures(ours_masks, ours_labels) == _signatures(masks, labels)
    # Test digits are disjoint from training digits (no shared digit signature).
    train_sig = set(_signatures(bench["train"]["masks"], bench["train"]["labels"]))
    test_sig = set(_signatures(bench["test"]["masks"], bench["test"]["labels"]))
    assert len(train_sig & test_sig) <= 2  # only genuinely identical digits in sklearn could collide


def test_test_split_is_stratified(bench):
    counts = np.bincount(load_digits().target, minlength=10)
    expected = 450 * counts / counts.sum()
    got = np.bincount(bench["test"]["labels"], minlength=10)
    assert np.all(np.abs(got - expected) < 1.0)


def test_variants_share_digits_and_labels(bench):
    for name in TEST_VARIANTS:
        np.testing.assert_array_equal(bench[name]["labels"], bench["test"]["labels"])
    for name in ("test_aligned", "test_random", "test_foreground_only"):
        np.testing.assert_array_equal(bench[name]["masks"], bench["test"]["masks"])
    np.testing.assert_array_equal(bench["test_aligned"]["styles"], bench["test"]["labels"])
    np.testing.assert_array_equal(bench["test_background_only"]["styles"], bench["test"]["labels"])
    assert not np.array_equal(bench["test_random"]["styles"], bench["test"]["styles"])


def test_foreground_only_is_zero_outside_the_mask(bench):
    fg = bench["test_foreground_only"]
    outside = fg["masks"] == 0
    assert np.all(fg["images"][outside] == 0)
    # The digit itself is drawn: bright strokes inside the mask.
    assert fg["images"][~outside].mean() > 100


def test_background_only_has_no_digit(bench):
    """With a digit, pixels under the stroke are much brighter than the rest; without, they are not."""

    def contrast(image_set: dict[str, np.ndarray], masks: np.ndarray) -> np.ndarray:
        lum = image_set["images"].astype(np.float64).mean(axis=3)
        inside = (lum * (masks > 0)).sum((1, 2)) / (masks > 0).sum((1, 2))
        outside = (lum * (masks == 0)).sum((1, 2)) / (masks == 0).sum((1, 2))
        return inside - outside

    stroke = bench["test"]["masks"]
    assert contrast(bench["test_aligned"], stroke).mean() > 60
    assert abs(contrast(bench["test_background_only"], stroke).mean()) < 5
    assert np.all(bench["test_background_only"]["masks"] == 0)


def test_train_style_correlation_matches_rho():
    for rho in (0.9, 0.5, 0.0):
        data = make_digit_texture_benchmark(seed=1, rho_train=rho)
        rate = np.mean(data["train"]["styles"] == data["train"]["labels"])
        expected = rho + (1 - rho) / NUM_STYLES  # a random style still hits the class 1 time in 10
        assert abs(rate - expected) < 0.035, (rho, rate)
        val_rate = np.mean(data["val"]["styles"] == data["val"]["labels"])
        assert abs(val_rate - expected) < 0.1
        test_rate = np.mean(data["test"]["styles"] == data["test"]["labels"])
        assert abs(test_rate - 0.1) < 0.05
        # Test styles cover all ten styles roughly uniformly.
        assert np.bincount(data["test"]["styles"], minlength=NUM_STYLES).min() >= 20


def test_reproducible_for_a_seed(bench):
    again = make_digit_texture_benchmark(seed=0)
    other = make_digit_texture_benchmark(seed=1)
    for name in SPLITS:
        for key in bench[name]:
            np.testing.assert_array_equal(again[name][key], bench[name][key])
    assert not np.array_equal(other["train"]["images"], bench["train"]["images"])


def test_other_image_size_and_sizes():
    data = make_digit_texture_benchmark(seed=2, image_size=24, val_size=100, test_size=0.2)
    n_test = round(0.2 * 1797)
    assert data["test"]["images"].shape == (n_test, 24, 24, 3)
    assert data["val"]["labels"].shape == (100,)
    assert data["train"]["labels"].shape == (1797 - n_test - 100,)
    masks, labels = _torch_masks(24)
    ours = np.concatenate([data[k]["masks"] for k in ("train", "val", "test")])
    ours_y = np.concatenate([data[k]["labels"] for k in ("train", "val", "test")])
    assert _signatures(ours, ours_y) == _signatures(masks, labels)


def test_textures_vary_per_image():
    rng = np.random.default_rng(0)
    tex = render_textures(np.array([0, 0, 4, 4]), 16, rng)
    assert tex.shape == (4, 16, 16, 3) and tex.min() >= 0 and tex.max() <= 1
    assert np.abs(tex[0] - tex[1]).mean() > 0.01
    again = render_textures(np.array([0, 0, 4, 4]), 16, np.random.default_rng(0))
    np.testing.assert_array_equal(again, tex)  # the generator alone decides the draw
    with pytest.raises(ValueError, match="styles"):
        render_textures(np.array([10]), 16, rng)


def test_stripe_styles_are_constant_along_their_stripes():
    # Without pixel noise, horizontal stripes (style 0) only vary down the rows, vertical ones (1) across columns.
    tex = render_textures(np.array([0, 1]), 16, np.random.default_rng(1), noise=0.0)
    np.testing.assert_allclose(tex[0], np.broadcast_to(tex[0][:, :1], tex[0].shape), atol=1e-12)
    np.testing.assert_allclose(tex[1], np.broadcast_to(tex[1][:1], tex[1].shape), atol=1e-12)
    assert np.ptp(tex[0][:, 0, 0]) > 0.1 and np.ptp(tex[1][0, :, 0]) > 0.1  # and they do vary the other way


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"rho_train": 1.5}, "rho_train"),
        ({"rho_train": -0.1}, "rho_train"),
        ({"image_size": 4}, "image_size"),
        ({"test_size": 1700}, "test_size"),
        ({"test_size": 1.5}, "test_size"),
        ({"test_size": 5}, "test_size"),
        ({"val_size": -1}, "val_size"),
        ({"seed": -3}, "seed"),
        ({"digit_alpha": (0.9, 0.2)}, "digit_alpha"),
        ({"digit_alpha": 0.5}, "digit_alpha"),
        ({"noise": 2.0}, "noise"),
        ({"noise": "low"}, "noise"),
        ({"texture_contrast": 0.0}, "texture_contrast"),
        ({"texture_brightness": 1.5}, "texture_brightness"),
        ({"mask_threshold": 1.0}, "mask_threshold"),
    ],
)
def test_parameter_errors_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_digit_texture_benchmark(**kwargs)


def test_in_distribution_variant_mixes_aligned_and_random_backgrounds_at_rho(bench):
    mixed, aligned, random_bg = bench["test_in_distribution"], bench["test_aligned"], bench["test"]
    from_aligned = np.all(mixed["images"] == aligned["images"], axis=(1, 2, 3))
    from_random = np.all(mixed["images"] == random_bg["images"], axis=(1, 2, 3))
    assert np.all(from_aligned | from_random)  # every image is one of the two renderings of its digit
    np.testing.assert_array_equal(mixed["styles"], np.where(from_aligned, aligned["styles"], random_bg["styles"]))
    # The share drawn from the aligned rendering is rho_train = 0.9 up to binomial noise (sd 1.4 points on 450).
    share = (np.asarray(mixed["styles"]) == np.asarray(mixed["labels"])).mean()
    assert 0.85 < share < 0.97
    np.testing.assert_array_equal(mixed["masks"], random_bg["masks"])


def test_the_decorrelated_validation_split_shows_the_validation_digits_on_class_independent_backgrounds(bench):
    val, decorrelated = bench["val"], bench["val_decorrelated"]
    np.testing.assert_array_equal(decorrelated["labels"], val["labels"])
    np.testing.assert_array_equal(decorrelated["masks"], val["masks"])  # the same strokes: only backgrounds change
    aligned = np.mean(decorrelated["styles"] == decorrelated["labels"])
    assert np.mean(val["styles"] == val["labels"]) > 0.85  # rho_train 0.9 (plus chance)
    assert aligned < 0.25  # ~1/10 by chance: the style says nothing about the class
    assert not np.array_equal(decorrelated["images"], val["images"])
