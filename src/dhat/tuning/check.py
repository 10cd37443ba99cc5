"""Checks of a chosen configuration before it is tested: AutoAttack and the gradient-masking checks on validation.

A robust-only objective rewards whatever makes PGD fail, gradient masking included. The
chosen configuration's model (trained with the tuning seed) is attacked on the
protocol's validation split with the evaluation suite, AutoAttack included, and the
sanity checks of :mod:`dhat.evaluation.sanity` are run on it, so a masked or degenerate
winner is flagged before any fresh seed is spent on it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from dhat.evaluation.config import AttackSuiteConfig
from dhat.evaluation.sanity import sanity_checks
from dhat.evaluation.suite import evaluate_attacks, scalar_metrics

__all__ = ["check_configuration"]

logger = logging.getLogger(__name__)


def check_configuration(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, suite: AttackSuiteConfig,
                        label: str) -> dict[str, Any]:
    """The suite's attacks (AutoAttack where the suite runs it) and the sanity checks on ``images``.

    Returns the scalar metrics of :func:`~dhat.evaluation.suite.evaluate_attacks`, the
    checks (``name``, ``passed``, ``detail``, ``values``) and ``passed`` (every check).
    """
    results = evaluate_attacks(model, images, labels, suite)
    checks = sanity_checks(model, images, labels, suite, results)
    passed = all(bool(c["passed"]) for c in checks)
    if not passed:
        failed = ", ".join(c["name"] for c in checks if not c["passed"])
        logger.warning("%s: the chosen configuration fails the gradient-masking check(s) %s on validation data; "
                       "its robust score may be an artefact", label, failed)
    return {**_json_ready(scalar_metrics(results)), "sanity_checks": _json_ready(checks), "passed": passed}


def _json_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value
