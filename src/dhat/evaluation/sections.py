"""The ``evaluation`` and ``transfer`` parameter sections, validated into dataclasses.

The defaults here equal ``conf/base/parameters_evaluation.yml`` (a test checks it), so a
key left out of an environment's YAML means the same thing everywhere. Errors name
the YAML path of the offending key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dhat.config import dataclass_from_dict
from dhat.evaluation.config import AttackSuiteConfig

__all__ = ["RobustGapSettings", "EvaluationSettings", "TransferSettings"]


def _positive_or_none(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1 or null (all test images), got {value!r}")
    return value


@dataclass(frozen=True)
class RobustGapSettings:
    """``evaluation.robust_gap``: training subset size (same size on test) and the attacks compared."""

    n: int = 200
    attacks: tuple[str, ...] = ("pgd10",)


@dataclass(frozen=True)
class EvaluationSettings:
    """``evaluation``: what the evaluation node attacks, and how.

    Attributes:
        suite: the attack suite's settings (``evaluation.suite``).
        n_eval: test images attacked (a fixed class-stratified subset); ``None`` = all.
        autoattack_n: AutoAttack runs on a fixed class-stratified subset of this many of
            those images (it costs far more than the other attacks); ``None`` = all of
            them. Every table labels the subset.
        subset_seed: seed of that subset and of the robust-gap training subset.
        robust_gap: see :class:`RobustGapSettings`.
        last_checkpoint_attacks: attacks also run on the last epoch's checkpoint.
        cam_threshold: Grad-CAM value from which a pixel is foreground (IoU with the true digit).
        attention_examples: test images whose Grad-CAM maps are stored for the report figure.
    """

    suite: AttackSuiteConfig = field(default_factory=AttackSuiteConfig)
    n_eval: int | None = None
    autoattack_n: int | None = 200
    subset_seed: int = 0
    robust_gap: RobustGapSettings = field(default_factory=RobustGapSettings)
    last_checkpoint_attacks: tuple[str, ...] = ("pgd10", "pgd20", "pgd50")
    cam_threshold: float = 0.1
    attention_examples: int = 6

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None, section: str = "evaluation") -> EvaluationSettings:
        """Validate the section; unknown keys and bad values raise ``ValueError`` naming the key."""
        values = dict(params or {})
        values["suite"] = AttackSuiteConfig.from_dict(values.get("suite"), section=f"{section}.suite")
        gap = dataclass_from_dict(RobustGapSettings, values.get("robust_gap"), f"{section}.robust_gap")
        values["robust_gap"] = dataclasses.replace(gap, attacks=tuple(gap.attacks))
        if "last_checkpoint_attacks" in values:
            values["last_checkpoint_attacks"] = tuple(values["last_checkpoint_attacks"] or ())
        settings = dataclass_from_dict(cls, values, section)
        _positive_or_none(settings.n_eval, f"{section}.n_eval")
        _positive_or_none(settings.autoattack_n, f"{section}.autoattack_n")
        if not 0.0 <= float(settings.cam_threshold) <= 1.0:
            raise ValueError(f"{section}.cam_threshold must be in [0, 1], got {settings.cam_threshold}")
        if int(settings.attention_examples) < 0:
            raise ValueError(f"{section}.attention_examples must be >= 0, got {settings.attention_examples}")
        if int(settings.robust_gap.n) < 1:
            raise ValueError(f"{section}.robust_gap.n must be >= 1, got {settings.robust_gap.n}")
        return settings

    def gap_attacks(self) -> tuple[str, ...]:
        """The robust-gap attacks that run under this suite (AutoAttack only when the suite has it)."""
        return tuple(a for a in self.robust_gap.attacks if a != "autoattack" or self.suite.autoattack)


@dataclass(frozen=True)
class TransferSettings:
    """``transfer``: black-box transfer between the trained models (paper table 6).

    Attributes:
        enabled: run the transfer node at all.
        n_images: test images (fixed class-stratified subset); ``None`` = all.
        subset_seed: seed of that subset.
        methods: namespaces to include (``None`` = every trained model found on disk).
        attacks: attacks crafted on each source model (``None``: FGSM, every PGD length, CW).
        suite: attack settings (AutoAttack off unless the section turns it on).
    """

    enabled: bool = True
    n_images: int | None = 200
    subset_seed: int = 0
    methods: tuple[str, ...] | None = None
    attacks: tuple[str, ...] | None = ("fgsm", "pgd10", "pgd50", "cw")
    suite: AttackSuiteConfig = field(default_factory=lambda: AttackSuiteConfig(autoattack=False, pgd_steps=(10, 50)))

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None, section: str = "transfer") -> TransferSettings:
        """Validate the section; unknown keys and bad values raise ``ValueError`` naming the key."""
        values = dict(params or {})
        suite = {"autoattack": False, "pgd_steps": [10, 50], **(values.get("suite") or {})}
        values["suite"] = AttackSuiteConfig.from_dict(suite, section=f"{section}.suite")
        for key in ("methods", "attacks"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        settings = dataclass_from_dict(cls, values, section)
        _positive_or_none(settings.n_images, f"{section}.n_images")
        return settings

    def attack_list(self) -> list[str] | None:
        """``attacks`` as the transfer functions take it."""
        return None if self.attacks is None else list(self.attacks)
