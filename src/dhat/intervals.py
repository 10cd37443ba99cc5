"""95% intervals for accuracies and paired method differences (plain numpy).

The protocol (docs/design.md, "The statistics"):

- One run: a percentile bootstrap over test images. Resample the images with
  replacement ``n_boot`` times (fixed seed); the interval holds the central
  ``1 - alpha`` of the resampled accuracies.
- Several seeds on the same test images: the mean over seeds with a Student-t
  interval, ``mean +- t(1 - alpha/2, k - 1) * sd / sqrt(k)`` (``sd`` with ddof 1).
- Two methods on the same images are compared *paired*: per image (``a_i - b_i``,
  bootstrapped with the same resampled images for both) for one run, per seed
  (difference of accuracies on the same seed) over several. An interval that
  contains 0 means "no detectable difference".

Inputs are boolean (or 0/1) correctness arrays: ``[n_images]`` for one run,
``[n_seeds, n_images]`` for several. Results are in percent (points for differences).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["Interval", "PairedDifference", "accuracy_interval", "mean_interval", "paired_difference", "NO_DIFFERENCE"]

NO_DIFFERENCE = "no detectable difference"


@dataclass(frozen=True)
class Interval:
    """An estimate in percent (or points) with its ``1 - alpha`` interval and how it was made."""

    estimate: float
    low: float
    high: float
    method: str
    n_images: int
    n_seeds: int
    sd: float | None = None

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def format(self, digits: int = 1) -> str:
        """``57.3 [52.1, 62.4]``."""
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def as_dict(self) -> dict[str, float | int | str | None]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "method": self.method,
                "n_images": self.n_images, "n_seeds": self.n_seeds, "sd": self.sd}


@dataclass(frozen=True)
class PairedDifference:
    """``a - b`` in points with its interval and the verdict it supports."""

    a: str
    b: str
    interval: Interval

    @property
    def verdict(self) -> str:
        if not self.interval.excludes_zero():
            return NO_DIFFERENCE
        return f"{self.a} better" if self.interval.estimate > 0 else f"{self.b} better"


def _as_runs(correct: np.ndarray, name: str) -> np.ndarray:
    """``[n_seeds, n_images]`` float array in {0, 1} from a 1-D or 2-D correctness array."""
    array = np.asarray(correct)
    if array.ndim not in (1, 2) or array.shape[-1] == 0:
        raise ValueError(f"{name} must be [n_images] or [n_seeds, n_images] with at least one image, got {array.shape}")
    if array.dtype != bool and not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must hold correctness flags (bool or 0/1)")
    return np.atleast_2d(array.astype(np.float64))


def _check(alpha: float, n_boot: int) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_boot < 100:
        raise ValueError(f"n_boot must be >= 100 for a stable percentile interval, got {n_boot}")


def _bootstrap(values: np.ndarray, alpha: float, n_boot: int, seed: int) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` (1-D) over ``n_boot`` resamples with replacement."""
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, values.shape[0], size=(n_boot, values.shape[0]))
    means = values[indices].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _t_interval(values: np.ndarray, alpha: float) -> tuple[float, float, float]:
    """Mean +- t * sd / sqrt(k) of per-seed values; returns (low, high, sd)."""
    k = values.shape[0]
    sd = float(values.std(ddof=1))
    half = float(stats.t.ppf(1 - alpha / 2, k - 1)) * sd / np.sqrt(k)
    mean = float(values.mean())
    return mean - half, mean + half, sd


def _interval(values: np.ndarray, per_image: np.ndarray, alpha: float, n_boot: int, seed: int) -> Interval:
    """``values`` = per-seed statistics (percent); ``per_image`` = the per-image values of a single run."""
    n_seeds, n_images = per_image.shape
    estimate = float(values.mean())
    if n_seeds == 1:
        low, high = _bootstrap(per_image[0] * 100.0, alpha, n_boot, seed)
        return Interval(estimate, low, high, f"bootstrap over {n_images} images", n_images, 1)
    low, high, sd = _t_interval(values, alpha)
    return Interval(estimate, low, high, f"t over {n_seeds} seeds", n_images, n_seeds, sd)


def accuracy_interval(correct: np.ndarray, *, alpha: float = 0.05, n_boot: int = 2000, seed: int = 0) -> Interval:
    """Accuracy (percent) with its interval: bootstrap over images for one run, t over seeds for several."""
    _check(alpha, n_boot)
    runs = _as_runs(correct, "correct")
    return _interval(runs.mean(axis=1) * 100.0, runs, alpha, n_boot, seed)


def mean_interval(values: np.ndarray, *, alpha: float = 0.05, n_boot: int = 2000, seed: int = 0) -> Interval:
    """Mean of a per-image measurement (an IoU, a share; any real values) with its percentile-bootstrap interval.

    Same resampling as :func:`accuracy_interval` for one run, in the values' own unit (not percent).
    """
    _check(alpha, n_boot)
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.shape[0] == 0 or not np.isfinite(array).all():
        raise ValueError(f"values must be a non-empty 1-D array of finite numbers, got shape {array.shape}")
    low, high = _bootstrap(array, alpha, n_boot, seed)
    n = int(array.shape[0])
    return Interval(float(array.mean()), low, high, f"bootstrap over {n} images", n, 1)


def paired_difference(
    correct_a: np.ndarray, correct_b: np.ndarray, name_a: str = "a", name_b: str = "b", *,
    alpha: float = 0.05, n_boot: int = 2000, seed: int = 0,
) -> PairedDifference:
    """``a - b`` in points on the same images (and seeds), with a paired interval and a verdict."""
    _check(alpha, n_boot)
    a, b = _as_runs(correct_a, "correct_a"), _as_runs(correct_b, "correct_b")
    if a.shape != b.shape:
        raise ValueError(
            f"correct_a {a.shape} and correct_b {b.shape} must cover the same seeds and images for a paired comparison"
        )
    per_image = a - b
    return PairedDifference(name_a, name_b, _interval(per_image.mean(axis=1) * 100.0, per_image, alpha, n_boot, seed))
