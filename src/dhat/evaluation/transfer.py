"""Transfer (black-box) attacks: craft on a source model, score on a target model (paper table 6).

Examples are crafted exactly as in :func:`dhat.evaluation.suite.evaluate_attacks`
(same seeds, same batches, source in eval mode), so a transfer from a model to
itself reproduces its white-box accuracy. Both models are scored in eval mode,
fp32, autocast off. Accuracies are percentages.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from dhat.evaluation.autoattack import run_autoattack
from dhat.evaluation.config import AttackSuiteConfig
from dhat.evaluation.inference import (
    check_images,
    check_labels,
    check_model,
    evaluation_context,
    model_device,
    percent,
    predict_raw,
)
from dhat.evaluation.registry import batch_names
from dhat.evaluation.suite import adversarial_batches, plan_attacks

__all__ = ["transfer_attack", "transfer_matrix"]

logger = logging.getLogger(__name__)


def _transfer_attack_names(config: AttackSuiteConfig, attacks: Sequence[str] | None) -> tuple[list[str], bool]:
    """Gradient attacks to craft and whether AutoAttack is crafted too (``config.transfer_autoattack``)."""
    if attacks is None:
        names = batch_names(config)
        if config.transfer_autoattack:
            names.append("autoattack")
        attacks = names
    return plan_attacks(config, attacks)


def _score_sources(
    source_name: str,
    source: nn.Module,
    targets: Mapping[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    config: AttackSuiteConfig,
    attacks: Sequence[str] | None,
) -> dict[str, dict[str, float]]:
    """Craft every attack once on ``source`` and score all ``targets``: ``{target: {attack: %}}``."""
    batch_attacks, run_aa = _transfer_attack_names(config, attacks)
    correct: dict[str, dict[str, list[torch.Tensor]]] = {t: {a: [] for a in batch_attacks} for t in targets}
    with contextlib.ExitStack() as stack:
        stack.enter_context(evaluation_context(source))
        for target in targets.values():
            # Targets may be the source itself; batchnorm_mode restores each one on exit.
            stack.enter_context(evaluation_context(target))
        for start, end, adv in adversarial_batches(source, images, labels, config, batch_attacks,
                                                   desc=f"craft on {source_name}"):
            y = labels[start:end]
            for target_name, target in targets.items():
                with torch.no_grad():
                    for attack, x_adv in adv.items():
                        correct[target_name][attack].append(target(x_adv).argmax(1) == y)
        results = {t: {a: percent(torch.cat(v)) for a, v in per_attack.items()} for t, per_attack in correct.items()}
        if run_aa:
            x_adv, info = run_autoattack(source, images, labels, config)
            logger.info("transfer AutoAttack crafted on %s: %s", source_name, info["label"])
            for target_name, target in targets.items():
                flags = predict_raw(target, x_adv, config.batch_size).argmax(1) == labels
                results[target_name]["autoattack"] = percent(flags)
    return results


def _validate(models: Mapping[str, nn.Module], images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    devices = {}
    for name, model in models.items():
        check_model(model, f"model {name!r}")
        devices[name] = model_device(model)
    if len(set(devices.values())) > 1:
        raise ValueError(f"all models must be on one device for transfer attacks, got {devices}; move them together")
    device = next(iter(devices.values()))
    images = check_images(images, device)
    check_labels(labels, images.shape[0], device)
    if images.shape[0] == 0:
        raise ValueError("images must hold at least one image to evaluate")
    return images


def transfer_attack(  # noqa: PLR0913 - source, target, data, settings
    source_model: nn.Module, target_model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
    config: AttackSuiteConfig, attacks: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Accuracy of ``target_model`` on examples crafted on ``source_model``.

    Args:
        attacks: among ``fgsm``, ``pgd<k>``, ``cw``, ``autoattack``; ``None`` crafts FGSM,
            every PGD length and CW, plus AutoAttack when ``config.transfer_autoattack``.

    Returns:
        ``clean`` (target's clean accuracy), one key per attack (target accuracy in
        percent), ``n_images`` and ``attacks`` (names crafted).
    """
    images = _validate({"source": source_model, "target": target_model}, images, labels)
    scored = _score_sources("source", source_model, {"target": target_model}, images, labels, config, attacks)["target"]
    with evaluation_context(target_model):
        clean = percent(predict_raw(target_model, images, config.batch_size).argmax(1) == labels)
    return {"clean": clean, **scored, "n_images": int(images.shape[0]), "attacks": list(scored)}


def transfer_matrix(
    models: Mapping[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    config: AttackSuiteConfig,
    attacks: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Every source x target pair (the diagonal is the white-box accuracy).

    Each source's examples are crafted once and scored on all targets.

    Returns:
        Rows ``{"source", "target", "attack", "accuracy"}``; each target also gets a
        row with ``attack == "clean"`` and ``source == target``.
    """
    if not models:
        raise ValueError("models must hold at least one named model, e.g. {'dhat': model}")
    images = _validate(models, images, labels)
    rows: list[dict[str, Any]] = []
    for target_name, target in models.items():
        with evaluation_context(target):
            clean = percent(predict_raw(target, images, config.batch_size).argmax(1) == labels)
        rows.append({"source": target_name, "target": target_name, "attack": "clean", "accuracy": clean})
    for source_name, source in models.items():
        scored = _score_sources(source_name, source, models, images, labels, config, attacks)
        for target_name, per_attack in scored.items():
            rows.extend(
                {"source": source_name, "target": target_name, "attack": attack, "accuracy": acc}
                for attack, acc in per_attack.items()
            )
    return rows
