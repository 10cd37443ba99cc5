"""AutoAttack (the official ``pyautoattack`` package) and its stand-alone Square attack.

Any setting that differs from the package's standard version (fewer iterations,
queries or target classes, a custom component list) makes the run *reduced* and
its label says so.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from dhat.evaluation.config import AttackSuiteConfig
from dhat.evaluation.inference import model_device, predict_raw

__all__ = ["frozen_parameters", "run_autoattack", "run_square"]

logger = logging.getLogger(__name__)


class _AutoAttackLogCapture(logging.Handler):
    """Collects AutoAttack's per-component robust accuracies from its DEBUG log lines.

    The package computes them but does not return them; its log line
    ``robust accuracy after APGD-CE: 12.34%`` is the cheap way to read them.
    Warnings the package emits are forwarded to this module's logger.
    """

    _PATTERN = re.compile(r"robust accuracy after ([A-Z\-]+): ([0-9.]+)%")

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.components: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        match = self._PATTERN.search(message)
        if match:
            self.components[match.group(1).lower()] = float(match.group(2))
        if record.levelno >= logging.WARNING:
            logger.warning("AutoAttack: %s", message)
        else:
            logger.debug("AutoAttack: %s", message)


@contextlib.contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[None]:
    """The model's parameters stop requiring gradients for the block, then get their flags back.

    FAB calls ``backward()``, which would also compute (and accumulate) a gradient for every
    weight; the attack needs the input's only, and that one is the same either way.
    """
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def _autoattack_label(config: AttackSuiteConfig, n_targets: int, full_targets: int) -> tuple[str, bool]:
    """Human label of the AutoAttack run and whether it is reduced from the package's standard settings."""
    parts: list[str] = []
    if config.autoattack_n_iter is not None:
        parts.append(f"n_iter={config.autoattack_n_iter}")
    if config.autoattack_square_queries is not None:
        parts.append(f"square_queries={config.autoattack_square_queries}")
    if n_targets != full_targets:
        parts.append(f"target_classes={n_targets}")
    components = ", ".join(config.autoattack_components())
    label = f"AutoAttack {config.autoattack_version} ({components})"
    reduced = bool(parts) or config.autoattack_version == "custom"
    if parts:
        label += " reduced: " + ", ".join(parts)
    return label, reduced


def run_autoattack(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: AttackSuiteConfig
) -> tuple[torch.Tensor, dict[str, Any]]:
    """AutoAttack (``pyautoattack``) at ``config.eps``; returns the adversarial images and run information.

    The caller must be inside :func:`evaluation_context`. Information keys:
    ``label`` (what ran, marked reduced when settings differ from the package's
    standard), ``reduced`` (bool), ``components`` (cumulative robust accuracy in
    percent after each component, from the package's log), ``seconds``.
    """
    from pyautoattack import AutoAttack  # noqa: PLC0415 - imported lazily: slow to import, only needed when AutoAttack runs

    device = model_device(model)
    n_classes = int(predict_raw(model, images[:1], 1).shape[1]) if images.shape[0] else 10
    if config.eps == 0 or images.shape[0] == 0:
        label, reduced = _autoattack_label(config, 9, 9)
        return images.clone(), {"label": label + " (skipped: eps=0 or no images)", "reduced": reduced,
                                "components": {}, "seconds": 0.0}
    components = set(config.autoattack_components())
    # The DLR losses read the 3rd (untargeted) and 4th (targeted) largest logits.
    for component, needed in (("apgd-t", 4), ("apgd-dlr", 3)):
        if component in components and n_classes < needed:
            raise ValueError(
                f"AutoAttack component {component} needs at least {needed} classes, the model has {n_classes}; "
                "set evaluation.autoattack_version: custom with autoattack_attacks that leave it out"
            )
    kwargs: dict[str, Any] = {"device": device, "eps": float(config.eps), "norm": "Linf", "seed": config.seed,
                              "version": config.autoattack_version}
    if config.autoattack_version == "custom":
        kwargs["attacks"] = list(config.autoattack_attacks or ())
    capture = _AutoAttackLogCapture()
    aa_logger = logging.getLogger("auto-attack")
    old_level, old_propagate = aa_logger.level, aa_logger.propagate
    aa_logger.addHandler(capture)
    aa_logger.setLevel(logging.DEBUG)
    aa_logger.propagate = False  # its progress goes through our logger (DEBUG), not the root handlers
    try:
        adversary = AutoAttack(model, **kwargs)
        with frozen_parameters(model):
            x_adv, label, reduced, seconds = _configure_and_run(adversary, images, labels, config, n_classes)
    finally:
        aa_logger.removeHandler(capture)
        aa_logger.setLevel(old_level)
        aa_logger.propagate = old_propagate
    return x_adv, {"label": label, "reduced": reduced, "components": dict(capture.components), "seconds": seconds}


def _configure_and_run(
    adversary: Any, images: torch.Tensor, labels: torch.Tensor, config: AttackSuiteConfig, n_classes: int
) -> tuple[torch.Tensor, str, bool, float]:
    """Apply the configured reductions to an ``AutoAttack`` object and run it; returns (x_adv, label, reduced, s)."""
    # The targeted components attack the top-9 wrong classes; with fewer classes there are fewer targets.
    n_targets = min(adversary.apgd_targeted.n_target_classes, n_classes - 1)
    full_targets = adversary.apgd_targeted.n_target_classes if config.autoattack_version != "custom" else n_targets
    adversary.apgd_targeted.n_target_classes = n_targets
    adversary.fab.n_target_classes = min(adversary.fab.n_target_classes, n_classes - 1)
    if config.autoattack_n_iter is not None:
        n_iter = config.autoattack_n_iter
        adversary.fab.n_iter = n_iter
        for apgd in (adversary.apgd, adversary.apgd_targeted):
            # APGD fixes its step-size checkpoint schedule from n_iter in its constructor: redo it the same way.
            apgd.n_iter = apgd.n_iter_orig = n_iter
            apgd.n_iter_2 = max(int(0.22 * n_iter), 1)
            apgd.n_iter_min = max(int(0.06 * n_iter), 1)
            apgd.size_decr = max(int(0.03 * n_iter), 1)
    if config.autoattack_square_queries is not None:
        adversary.square.n_queries = config.autoattack_square_queries
    label, reduced = _autoattack_label(config, n_targets, full_targets)
    started = time.perf_counter()
    x_adv, _ = adversary.run_standard_evaluation(images, labels, batch_size=config.batch_size)
    return x_adv.detach(), label, reduced, time.perf_counter() - started


def run_square(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, n_queries: int, seed: int,
    batch_size: int,
) -> torch.Tensor:
    """Stand-alone Square attack (``pyautoattack``, margin loss, untargeted), in batches.

    The query schedule is rescaled to ``n_queries`` (the package's option for budgets
    below its 10 000-query design). The caller must be inside :func:`evaluation_context`.
    """
    from pyautoattack.square import SquareAttack  # noqa: PLC0415 - imported lazily, as above

    attack = SquareAttack(model, norm="Linf", n_queries=n_queries, eps=float(eps), p_init=0.8, n_restarts=1,
                          seed=seed, verbose=False, device=model_device(model), resc_schedule=True)
    out = []
    for start in range(0, images.shape[0], batch_size):
        with torch.no_grad():
            out.append(attack.perturb(images[start : start + batch_size], labels[start : start + batch_size]))
    return torch.cat(out) if out else images.clone()

