"""Intervals against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dhat.intervals import NO_DIFFERENCE, accuracy_interval, mean_interval, paired_difference


def test_bootstrap_interval_equals_an_explicit_loop_with_the_same_draws():
    correct = np.array([1, 0, 1, 1, 0, 1, 0, 1], dtype=bool)
    got = accuracy_interval(correct, n_boot=500, seed=3)
    rng = np.random.default_rng(3)
    draws = rng.integers(0, 8, size=(500, 8))
    means = sorted(100.0 * sum(correct[i] for i in row) / 8 for row in draws)
    # numpy's default quantile interpolates linearly between order statistics.
    def quantile(q):
        pos = q * (len(means) - 1)
        lo = math.floor(pos)
        return means[lo] + (means[min(lo + 1, len(means) - 1)] - means[lo]) * (pos - lo)
    assert got.estimate == 62.5
    assert (got.low, got.high) == pytest.approx((quantile(0.025), quantile(0.975)))
    assert got.n_seeds == 1 and got.method == "bootstrap over 8 images"


def test_constant_vectors_have_degenerate_intervals_and_large_samples_match_the_normal_approximation():
    all_right = accuracy_interval(np.ones(50, bool))
    assert (all_right.estimate, all_right.low, all_right.high) == (100.0, 100.0, 100.0)
    half = accuracy_interval(np.arange(2000) % 2 == 0, n_boot=2000).half_width
    assert half == pytest.approx(100 * 1.96 * math.sqrt(0.25 / 2000), rel=0.1)  # 2.19 points


def test_t_interval_over_three_seeds_by_hand():
    # Accuracies 50 %, 75 %, 100 % on 4 images: mean 75, sd 25, t(0.975, 2) = 4.302652729911275.
    runs = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=bool)
    got = accuracy_interval(runs)
    half = 4.302652729911275 * 25 / math.sqrt(3)
    assert (got.estimate, got.sd) == pytest.approx((75.0, 25.0))
    assert (got.low, got.high) == pytest.approx((75 - half, 75 + half))
    assert got.method == "t over 3 seeds" and got.format() == f"75.0 [{75 - half:.1f}, {75 + half:.1f}]"


def test_paired_difference_by_hand_and_identical_methods():
    a = np.array([1, 1, 0, 1], bool)
    b = np.array([1, 0, 0, 0], bool)
    diff = paired_difference(a, b, "dhat", "uiat", n_boot=200)
    assert diff.interval.estimate == pytest.approx(50.0)  # per image: 0, 1, 0, 1
    same = paired_difference(a, a, "dhat", "uiat")
    assert (same.interval.estimate, same.interval.low, same.interval.high) == (0.0, 0.0, 0.0)
    assert same.verdict == NO_DIFFERENCE
    runs_a, runs_b = np.array([[1, 1, 1, 0], [1, 1, 0, 0]]), np.array([[1, 0, 0, 0], [1, 1, 0, 0]])
    per_seed = paired_difference(runs_a, runs_b, n_boot=200).interval  # per-seed differences 50, 0
    half = 12.706204736174696 * math.sqrt(1250) / math.sqrt(2)
    assert (per_seed.estimate, per_seed.low, per_seed.high) == pytest.approx((25.0, 25 - half, 25 + half))


def test_pairing_finds_a_difference_the_separate_intervals_cannot():
    rng = np.random.default_rng(0)
    b = rng.random(400) < 0.5
    a = b.copy()
    a[np.flatnonzero(~b)[:20]] = True  # a = b plus 20 extra correct images: +5 points
    ia, ib = accuracy_interval(a), accuracy_interval(b)
    assert ia.low < ib.high  # the unpaired intervals overlap
    diff = paired_difference(a, b, "dhat", "uiat")
    assert diff.interval.estimate == pytest.approx(5.0)
    assert diff.interval.low > 0 and diff.verdict == "dhat better"
    assert paired_difference(b, a, "uiat", "dhat").verdict == "dhat better"


def test_bad_inputs_are_named_and_results_are_reproducible():
    with pytest.raises(ValueError, match="correct_a .* must cover the same seeds and images"):
        paired_difference(np.ones(3, bool), np.ones(4, bool))
    with pytest.raises(ValueError, match="alpha"):
        accuracy_interval(np.ones(3, bool), alpha=1.5)
    with pytest.raises(ValueError, match="n_boot"):
        accuracy_interval(np.ones(3, bool), n_boot=10)
    with pytest.raises(ValueError, match="correctness flags"):
        accuracy_interval(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match=r"\[n_images\]"):
        accuracy_interval(np.ones((2, 2, 2), bool))
    x = np.random.default_rng(1).random(100) < 0.3
    assert accuracy_interval(x, seed=5) == accuracy_interval(x, seed=5)


def test_mean_interval_of_real_values_equals_an_explicit_bootstrap_loop():
    values = np.array([0.2, 0.9, 0.4, 0.4, 1.0, 0.0, 0.75])
    interval = mean_interval(values, n_boot=500, seed=3)
    rng = np.random.default_rng(3)
    draws = rng.integers(0, values.size, size=(500, values.size))
    means = [values[row].mean() for row in draws]
    assert interval.estimate == pytest.approx(values.mean())
    assert (interval.low, interval.high) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))
    assert interval.n_images == 7 and interval.method == "bootstrap over 7 images"
    assert mean_interval(np.full(5, 0.3)).format(2) == "0.30 [0.30, 0.30]"
    for bad in (np.array([]), np.array([[0.1]]), np.array([0.1, np.nan])):
        with pytest.raises(ValueError, match="values must be"):
            mean_interval(bad)
