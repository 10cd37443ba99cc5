"""Settings of the attack suite (docs/design.md, "The evaluation protocol"), validated on construction.

Radii are in pixel scale ``[0, 1]`` and may be written ``"8/255"`` in YAML. The
defaults equal ``evaluation.suite`` in ``conf/base`` (a test keeps them equal).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from dhat.config import dataclass_from_dict, parse_pixel_value
from dhat.evaluation.registry import ATTACKS

__all__ = [
    "AUTOATTACK_COMPONENTS",
    "AUTOATTACK_STANDARD",
    "AUTOATTACK_VERSIONS",
    "GRADIENT_FREE_COMPONENTS",
    "AttackSuiteConfig",
    "is_int",
]

#: Components of AutoAttack's standard version, in the order the package runs them.
AUTOATTACK_STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")
AUTOATTACK_COMPONENTS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
AUTOATTACK_VERSIONS = ("standard", "plus", "rand", "custom")
GRADIENT_FREE_COMPONENTS = {"square"}


@dataclasses.dataclass(frozen=True)
class AttackSuiteConfig:
    """Settings of the attack suite, validated on construction.

    Attributes:
        eps: L-inf radius in pixel scale (8/255 for CIFAR).
        step_size: PGD and CW step (2/255).
        pgd_steps: PGD lengths reported; the longest is run once and the shorter
            ones are its intermediate iterates.
        cw_steps: iterations of CW-inf (PGD on the margin loss).
        fgsm: whether FGSM is part of the default suite.
        autoattack: whether AutoAttack is part of the default suite.
        autoattack_version: ``standard`` (APGD-CE, APGD-T, FAB-T, Square), ``plus``,
            ``rand`` or ``custom`` (then ``autoattack_attacks`` lists the components).
        autoattack_attacks: components for the ``custom`` version.
        autoattack_n_iter: APGD/FAB iterations; ``None`` keeps the package's 100.
            Anything else makes the run a *reduced* AutoAttack and is labelled so.
        autoattack_square_queries: Square query budget inside AutoAttack;
            ``None`` keeps the package's 5000 (otherwise labelled reduced).
        transfer_autoattack: whether transfer evaluations also craft AutoAttack
            examples on the source model (expensive; off by default).
        batch_size: images per forward/backward pass.
        seed: base seed of every random start (see the module docstring).
        progress: show tqdm progress bars.
        robust_gap_subset: images per split for :func:`robust_gap`; ``None`` uses
            the size of the smaller split.
        sanity_eps_sweep: radii of the "accuracy -> 0 as eps grows" check, ascending.
        sanity_pgd_steps: PGD iterations per radius of the sweep.
        sanity_step_factor: sweep step size is ``factor * eps / steps`` so that the
            attack can cross the whole ball at every radius.
        sanity_max_accuracy: accuracy (percent) the largest radius must fall below.
        sanity_tolerance: slack (percentage points) for the monotonicity comparisons.
        sanity_subset: images used by the sweep and the Square check (first ones of
            a seeded permutation); ``None`` uses all.
        square_queries: query budget of the stand-alone Square attack.
        square_subset: images for the stand-alone Square attack; ``None`` uses
            ``sanity_subset``.
    """

    eps: float = 8 / 255
    step_size: float = 2 / 255
    pgd_steps: tuple[int, ...] = (10, 20, 50)
    cw_steps: int = 30
    fgsm: bool = True
    autoattack: bool = True
    autoattack_version: str = "standard"
    autoattack_attacks: tuple[str, ...] | None = None
    autoattack_n_iter: int | None = None
    autoattack_square_queries: int | None = None
    transfer_autoattack: bool = False
    batch_size: int = 500
    seed: int = 0
    progress: bool = True
    robust_gap_subset: int | None = None
    sanity_eps_sweep: tuple[float, ...] = (8 / 255, 16 / 255, 32 / 255, 64 / 255, 128 / 255)
    sanity_pgd_steps: int = 20
    sanity_step_factor: float = 2.5
    sanity_max_accuracy: float = 5.0
    sanity_tolerance: float = 1.0
    sanity_subset: int | None = 200
    square_queries: int = 500
    square_subset: int | None = 100

    def __post_init__(self) -> None:
        """Normalise sequences to tuples and reject invalid values, naming the field."""
        set_ = object.__setattr__  # frozen dataclass: normalise in place once
        set_(self, "pgd_steps", tuple(self.pgd_steps))
        set_(self, "sanity_eps_sweep", tuple(float(e) for e in self.sanity_eps_sweep))
        if self.autoattack_attacks is not None:
            set_(self, "autoattack_attacks", tuple(self.autoattack_attacks))

        def need(condition: bool, field: str, message: str) -> None:
            if not condition:
                raise ValueError(f"evaluation.{field} {message}")

        for field in ("eps", "step_size", "sanity_step_factor", "sanity_max_accuracy", "sanity_tolerance"):
            value = getattr(self, field)
            need(isinstance(value, int | float) and not isinstance(value, bool), field, f"must be a number, got {value!r}")
            need(math.isfinite(value) and value >= 0, field, f"must be >= 0, got {value!r}")
        need(self.eps <= 1, "eps", f"must be <= 1 (pixel scale [0, 1]; write 8/255, not 8), got {self.eps!r}")
        need(self.step_size > 0, "step_size", f"must be > 0, got {self.step_size!r}")
        need(len(self.pgd_steps) > 0, "pgd_steps", "must list at least one PGD length, e.g. [10, 20, 50]")
        for k in self.pgd_steps:
            need(is_int(k) and k >= 1, "pgd_steps", f"must hold integers >= 1, got {self.pgd_steps!r}")
        need(len(set(self.pgd_steps)) == len(self.pgd_steps), "pgd_steps", f"has duplicates: {self.pgd_steps!r}")
        for field in ("cw_steps", "batch_size", "sanity_pgd_steps", "square_queries"):
            value = getattr(self, field)
            need(is_int(value) and value >= 1, field, f"must be an integer >= 1, got {value!r}")
        need(is_int(self.seed), "seed", f"must be an integer, got {self.seed!r}")
        for field in ("robust_gap_subset", "sanity_subset", "square_subset", "autoattack_n_iter",
                      "autoattack_square_queries"):
            value = getattr(self, field)
            need(value is None or (is_int(value) and value >= 1), field,
                 f"must be null or an integer >= 1, got {value!r}")
        need(self.autoattack_version in AUTOATTACK_VERSIONS, "autoattack_version",
             f"must be one of {', '.join(AUTOATTACK_VERSIONS)}, got {self.autoattack_version!r}")
        if self.autoattack_version == "custom":
            need(bool(self.autoattack_attacks), "autoattack_attacks",
                 "must list the components when autoattack_version is 'custom', e.g. [apgd-ce, square]")
        else:
            need(self.autoattack_attacks is None, "autoattack_attacks",
                 "is only used with autoattack_version: custom; remove it or set the version to custom")
        for name in self.autoattack_attacks or ():
            need(name in AUTOATTACK_COMPONENTS, "autoattack_attacks",
                 f"has unknown component {name!r}; choose from {', '.join(AUTOATTACK_COMPONENTS)}")
        need(len(self.sanity_eps_sweep) >= 2, "sanity_eps_sweep", "must list at least two radii")
        need(all(e > 0 for e in self.sanity_eps_sweep), "sanity_eps_sweep", "must hold radii > 0")
        need(list(self.sanity_eps_sweep) == sorted(self.sanity_eps_sweep), "sanity_eps_sweep",
             f"must be ascending, got {self.sanity_eps_sweep!r}")
        need(self.sanity_max_accuracy <= 100, "sanity_max_accuracy", "is a percentage and must be <= 100")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, section: str = "evaluation") -> AttackSuiteConfig:
        """Build from a YAML mapping; radii may be written ``"8/255"``; unknown keys are rejected by name."""
        values = dict(values or {})
        for key in ("eps", "step_size"):
            if key in values:
                values[key] = parse_pixel_value(values[key], f"{section}.{key}")
        if "sanity_eps_sweep" in values:
            sweep = values["sanity_eps_sweep"]
            if isinstance(sweep, str) or not isinstance(sweep, Sequence):
                raise ValueError(f"{section}.sanity_eps_sweep must be a list of radii, got {sweep!r}")
            values["sanity_eps_sweep"] = tuple(
                parse_pixel_value(e, f"{section}.sanity_eps_sweep[{i}]") for i, e in enumerate(sweep)
            )
        try:
            return dataclass_from_dict(cls, values, section)
        except ValueError as error:
            # __post_init__ cannot know where the mapping came from: re-prefix with the YAML path.
            message = str(error)
            if section != "evaluation" and message.startswith("evaluation."):
                message = f"{section}." + message[len("evaluation."):]
            raise ValueError(message) from None

    def pgd_names(self) -> tuple[str, ...]:
        """Result keys of the PGD lengths, e.g. ``("pgd10", "pgd20", "pgd50")``."""
        return tuple(f"pgd{k}" for k in sorted(self.pgd_steps))

    def default_attacks(self) -> tuple[str, ...]:
        """Attacks run when the caller does not choose: every registered attack (FGSM, every PGD, CW, AutoAttack and
        any added one) in registration order, FGSM and AutoAttack as enabled."""
        switched = {"fgsm": self.fgsm, "autoattack": self.autoattack}
        return tuple(name for family in ATTACKS if switched.get(family, True) for name in ATTACKS.get(family).allowed(self))

    def autoattack_components(self) -> tuple[str, ...]:
        """Components AutoAttack runs under this configuration."""
        if self.autoattack_version == "custom":
            return tuple(self.autoattack_attacks or ())
        if self.autoattack_version == "standard":
            return AUTOATTACK_STANDARD
        if self.autoattack_version == "plus":
            return ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
        return ("apgd-ce", "apgd-dlr")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)

