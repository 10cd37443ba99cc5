"""Robust accuracy as a function of the attack radius (paper figures 3 and 8).

Each radius ``eps`` runs the suite's gradient attacks with the step scaled to it
(``step = eps / 4``: 2/255 at 8/255, as in the main evaluation); PGD-10 is the 10th
iterate of the PGD-20 run, as in :func:`dhat.evaluation.evaluate_attacks`. Every
accuracy carries its 95% bootstrap interval over the test images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from dhat.config import dataclass_from_dict, positive_radii
from dhat.evaluation.config import AttackSuiteConfig
from dhat.evaluation.registry import BATCH_EXAMPLES, is_batch_attack, of_family, steps
from dhat.evaluation.suite import evaluate_attacks
from dhat.intervals import accuracy_interval

__all__ = ["RadiusSweepConfig", "robustness_vs_eps"]

_ATTACKS = ("fgsm", "pgd10", "pgd20", "cw")  # the default; any per-batch attack of the registry is accepted


@dataclasses.dataclass(frozen=True)
class RadiusSweepConfig:
    """Settings of the sweep (``analysis.robustness_vs_eps`` in ``conf/``).

    Attributes:
        radii: L-inf radii (pixel scale; ``"8/255"`` accepted).
        attacks: per-batch attacks of :mod:`dhat.evaluation.registry` (default ``fgsm``, ``pgd10``, ``pgd20``, ``cw``).
        step_fraction: attack step as a fraction of the radius.
        cw_steps: iterations of CW-inf.
        n_images: test images (a fixed class-stratified subset; ``None`` = all).
        subset_seed: seed of that subset and of the bootstrap.
        batch_size: images per pass.
        seed: base seed of the random starts.
    """

    radii: tuple[float, ...] = (2 / 255, 4 / 255, 6 / 255, 8 / 255, 10 / 255, 12 / 255, 16 / 255)
    attacks: tuple[str, ...] = _ATTACKS
    step_fraction: float = 0.25
    cw_steps: int = 30
    n_images: int | None = None
    subset_seed: int = 0
    batch_size: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        section = "analysis.robustness_vs_eps"
        object.__setattr__(self, "radii", positive_radii(self.radii, f"{section}.radii"))
        unknown = [a for a in self.attacks if not is_batch_attack(a)]
        if unknown or not self.attacks:
            raise ValueError(f"{section}.attacks must be a non-empty list of per-batch attacks ({BATCH_EXAMPLES}), "
                             f"got {list(self.attacks)}")
        object.__setattr__(self, "attacks", tuple(dict.fromkeys(self.attacks)))
        if not 0.0 < self.step_fraction <= 1.0:
            raise ValueError(f"{section}.step_fraction must be in (0, 1], got {self.step_fraction}")
        if self.n_images is not None and self.n_images < 1:
            raise ValueError(f"{section}.n_images must be >= 1 or null (all test images), got {self.n_images}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> RadiusSweepConfig:
        return dataclass_from_dict(cls, values, "analysis.robustness_vs_eps")

    def suite(self, eps: float) -> AttackSuiteConfig:
        """The attack suite at radius ``eps``."""
        lengths = sorted({steps(a) for a in of_family(self.attacks, "pgd")}) or [10]
        return AttackSuiteConfig(eps=eps, step_size=self.step_fraction * eps, pgd_steps=tuple(lengths),
                                 cw_steps=self.cw_steps, autoattack=False, batch_size=self.batch_size,
                                 seed=self.seed, progress=False)


def robustness_vs_eps(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                      config: RadiusSweepConfig) -> pd.DataFrame:
    """Accuracy (percent) under each attack at each radius, with 95% bootstrap intervals.

    Returns one row per (radius, attack) plus a ``clean`` row at radius 0: ``radius``,
    ``radius_255``, ``attack``, ``accuracy``, ``low``, ``high``, ``n_images``.
    """
    rows: list[dict[str, Any]] = []

    def add(radius: float, attack: str, correct: np.ndarray) -> None:
        interval = accuracy_interval(correct, seed=config.subset_seed)
        rows.append({"radius": radius, "radius_255": round(radius * 255, 4), "attack": attack,
                     "accuracy": interval.estimate, "low": interval.low, "high": interval.high,
                     "n_images": interval.n_images})

    for index, eps in enumerate(config.radii):
        results = evaluate_attacks(model, images, labels, config.suite(eps), attacks=list(config.attacks))
        if index == 0:
            add(0.0, "clean", results["per_sample"]["clean"].numpy())
        for attack in config.attacks:
            add(eps, attack, results["per_sample"][attack].numpy())
    return pd.DataFrame(rows)
