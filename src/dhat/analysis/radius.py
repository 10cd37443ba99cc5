"""Robust accuracy as a function of the attack radius (paper figures 3 and 8).

Each radius ``eps`` runs the suite's gradient attacks with the step scaled to it
(``step = eps / 4``: 2/255 at 8/255, as in the main evaluation); PGD-10 is the 10th
iterate of the PGD-20 run, as in :func:`dhat.evaluation.evaluate_attacks`. Every
accuracy carries its 95% bootstrap interval over the test images.

At the evaluation's own radius the sweep would repeat the evaluation's attacks exactly
(same images, batches, seeds, steps): :func:`evaluated_flags` hands it the evaluation's
per-image record instead, and those attacks are not crafted again.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from dhat.config import dataclass_from_dict, positive_radii
from dhat.evaluation.config import AttackSuiteConfig
from dhat.evaluation.registry import BATCH_EXAMPLES, family, is_batch_attack, of_family, steps
from dhat.evaluation.suite import evaluate_attacks
from dhat.intervals import accuracy_interval

__all__ = ["RadiusSweepConfig", "evaluated_flags", "robustness_vs_eps"]

logger = logging.getLogger(__name__)

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


#: Settings that decide an attack's per-image outcome (with the images, the model and the attack's name).
_SAME_OUTCOME = ("eps", "step_size", "cw_steps", "seed", "batch_size")


def evaluated_flags(per_image: Mapping[str, np.ndarray], suite: AttackSuiteConfig, config: RadiusSweepConfig,
                    positions: np.ndarray) -> dict[float, dict[str, np.ndarray]]:
    """The sweep's outcomes that the evaluation already has: ``{radius: {attack: correct flags}}``.

    ``per_image`` is the evaluation's record (:mod:`dhat.evaluation.records`) of the same
    checkpoint with the suite ``suite``; ``positions`` are the test images the sweep attacks.
    Its attacks count only where the sweep would run them identically: the same images in
    the same order, and at the suite's radius the same step, CW length, seed and batches.
    Anything else (another subset, step fraction or seed) gives ``{}``, and the sweep
    crafts everything itself.
    """
    if suite.eps not in config.radii or not np.array_equal(np.asarray(per_image.get("positions", ())), positions):
        return {}
    sweep = config.suite(suite.eps)
    if any(getattr(sweep, name) != getattr(suite, name) for name in _SAME_OUTCOME):
        return {}
    known = {a: np.asarray(per_image[a], dtype=bool) for a in ("clean", *config.attacks) if a in per_image}
    return {suite.eps: known} if set(known) - {"clean"} else {}


def _outcomes(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: RadiusSweepConfig, eps: float,
              known: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Clean and every attack's per-image outcomes at ``eps``, crafting only what ``known`` lacks.

    The clean predictions and FGSM (one step, cheap) are always measured; where they differ
    from ``known``, the record is of another checkpoint or other settings: it is set aside
    (with a warning) and every attack is crafted.
    """
    checked = [a for a in config.attacks if a not in known or family(a) == "fgsm"]
    results = evaluate_attacks(model, images, labels, config.suite(eps), attacks=checked)
    measured = {name: results["per_sample"][name].numpy() for name in ("clean", *checked)}
    if any(name in known and not np.array_equal(known[name], flags) for name, flags in measured.items()):
        logger.warning("robustness vs radius at %.4f: the evaluation's record is not this checkpoint's under these "
                       "settings (its clean or FGSM outcomes differ); crafting every attack", eps)
        known = {}
        rest = [a for a in config.attacks if a not in measured]
        results = evaluate_attacks(model, images, labels, config.suite(eps), attacks=rest)
        measured |= {name: results["per_sample"][name].numpy() for name in rest}
    return {**{a: np.asarray(known[a], dtype=bool) for a in config.attacks if a in known}, **measured}


def robustness_vs_eps(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: RadiusSweepConfig,
                      known: Mapping[float, Mapping[str, np.ndarray]] | None = None) -> pd.DataFrame:
    """Accuracy (percent) under each attack at each radius, with 95% bootstrap intervals.

    ``known``: per-image outcomes already measured (:func:`evaluated_flags`); those
    attacks are not run again at that radius, once the clean and FGSM outcomes measured
    here agree with them (otherwise everything is crafted, see :func:`_outcomes`).

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
        done = _outcomes(model, images, labels, config, eps, (known or {}).get(eps, {}))
        if index == 0:
            add(0.0, "clean", done["clean"])
        for attack in config.attacks:
            add(eps, attack, done[attack])
    return pd.DataFrame(rows)
