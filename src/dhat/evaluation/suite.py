"""The attack suite: clean, FGSM, PGD-k (one run of the longest gives the shorter ones), CW-inf, AutoAttack.

Randomness: batch ``i`` of every randomly started attack is seeded with ``seed + i``
right before it runs, so PGD and CW start from the same point, a run is reproducible
for a given ``(seed, batch_size)``, and the attacks do not depend on which other
attacks ran. The caller's random state is restored afterwards. Accuracies are percentages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from dhat.evaluation import gradient_attacks  # noqa: F401 - registers FGSM, PGD, CW and AutoAttack
from dhat.evaluation.autoattack import run_autoattack
from dhat.evaluation.config import AttackSuiteConfig
from dhat.evaluation.inference import (
    check_inputs,
    evaluation_context,
    iterate_batches,
    percent,
    predict_raw,
)
from dhat.evaluation.registry import ATTACKS, family, of_family

__all__ = ["adversarial_batches", "evaluate_attacks", "plan_attacks", "scalar_metrics", "summarise"]

logger = logging.getLogger(__name__)


def plan_attacks(config: AttackSuiteConfig, attacks: Sequence[str] | None) -> tuple[list[str], bool]:
    """Validate attack names; return the per-batch (gradient) attacks and whether AutoAttack runs."""
    chosen = tuple(config.default_attacks() if attacks is None else attacks)
    valid = {n for a in ATTACKS for n in ATTACKS.get(a).allowed(config)}
    unknown = [name for name in chosen if name not in valid]
    if unknown:
        raise ValueError(
            f"attacks {unknown} are not in the suite; choose from {', '.join(sorted(valid))} "
            "(PGD lengths come from evaluation.pgd_steps)"
        )
    batch_attacks = [name for name in chosen if ATTACKS.get(family(name)).craft is not None]
    return list(dict.fromkeys(batch_attacks)), "autoattack" in chosen


def adversarial_batches(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: AttackSuiteConfig,
    attacks: Sequence[str],
    desc: str = "attacks",
) -> Iterator[tuple[int, int, dict[str, torch.Tensor]]]:
    """Craft the per-batch attacks on ``model``: yields ``(start, end, {attack: x_adv})``.

    The caller must be inside :func:`evaluation_context` (eval mode). ``attacks`` are names
    of registered families with a crafting function (:mod:`dhat.evaluation.registry`:
    ``fgsm``, ``pgd<k>`` with ``k`` in ``config.pgd_steps``, ``cw``), crafted family by family
    in registration order. All PGD lengths come from a single run of the longest requested
    one. Batch ``i`` is seeded with ``config.seed + i`` before each randomly started attack,
    so PGD and CW share their start and a separate run with the same seed reproduces them.
    """
    families = [(ATTACKS.get(a), of_family(attacks, a)) for a in ATTACKS]
    families = [(attack, names) for attack, names in families if names and attack.craft is not None]
    for index, start, end in iterate_batches(images.shape[0], config.batch_size, desc, config.progress):
        x, y = images[start:end], labels[start:end]
        out: dict[str, torch.Tensor] = {}
        for attack, names in families:
            out.update(attack.craft(model, x, y, config, names, index))
        yield start, end, out


def evaluate_attacks(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: AttackSuiteConfig,
    attacks: Sequence[str] | None = None,
    autoattack_indices: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Accuracy (percent) of ``model`` under each attack of the suite.

    Args:
        model: classifier on pixel-scale inputs.
        images, labels: float ``[N, C, H, W]`` in ``[0, 1]`` and int64 ``[N]`` on the model's device.
        config: the suite's settings.
        attacks: names to run among ``fgsm``, ``pgd<k>``, ``cw``, ``autoattack``;
            ``None`` runs ``config.default_attacks()``. Clean accuracy is always measured.
        autoattack_indices: run AutoAttack on ``images[autoattack_indices]`` only (a
            fixed, labelled subset: AutoAttack costs far more than the other attacks);
            ``None`` runs it on every image.

    Returns:
        ``clean`` and one key per attack run (accuracy in percent), ``worst_case``
        (a point counts only if it survives every attack run), ``n_images``,
        ``eps``, ``attacks`` (names run, in order), ``seconds`` (wall time of
        ``gradient_attacks``, which share their batches, and of ``autoattack``),
        and when AutoAttack ran ``autoattack_label``,
        ``autoattack_reduced`` and ``autoattack_components`` (cumulative robust
        accuracy after each component). ``per_sample`` maps ``clean`` and each
        attack to a bool CPU tensor ``[N]`` of correct predictions (for the sanity
        checks); :func:`scalar_metrics` drops it for JSON. With ``autoattack_indices``,
        ``per_sample["autoattack"]`` covers those images only (in that order),
        ``autoattack_n_images`` says how many, and ``worst_case`` counts the attacks run
        on every image.
    """
    _, images, labels = check_inputs(model, images, labels)
    batch_attacks, run_aa = plan_attacks(config, attacks)
    n = images.shape[0]
    if n == 0:
        raise ValueError("images must hold at least one image to evaluate")
    correct: dict[str, torch.Tensor] = {}
    seconds: dict[str, float] = {}
    results: dict[str, Any] = {}
    with evaluation_context(model):
        correct["clean"] = (predict_raw(model, images, config.batch_size).argmax(1) == labels).cpu()
        if batch_attacks:
            parts: dict[str, list[torch.Tensor]] = {name: [] for name in batch_attacks}
            started = time.perf_counter()
            for start, end, adv in adversarial_batches(model, images, labels, config, batch_attacks):
                y = labels[start:end]
                for name in batch_attacks:
                    with torch.no_grad():
                        parts[name].append((model(adv[name]).argmax(1) == y).cpu())
            seconds["gradient_attacks"] = time.perf_counter() - started
            for name in batch_attacks:
                correct[name] = torch.cat(parts[name])
        if run_aa:
            aa_images, aa_labels = images, labels
            if autoattack_indices is not None:
                autoattack_indices = autoattack_indices.to(images.device)
                if autoattack_indices.numel() == 0 or int(autoattack_indices.max()) >= n or int(autoattack_indices.min()) < 0:
                    raise ValueError(f"autoattack_indices must be non-empty indices into the {n} images")
                aa_images, aa_labels = images[autoattack_indices], labels[autoattack_indices]
            x_adv, info = run_autoattack(model, aa_images, aa_labels, config)
            correct["autoattack"] = (predict_raw(model, x_adv, config.batch_size).argmax(1) == aa_labels).cpu()
            results["autoattack_n_images"] = int(aa_labels.shape[0])
            seconds["autoattack"] = info["seconds"]
            results["autoattack_label"] = info["label"]
            results["autoattack_reduced"] = info["reduced"]
            results["autoattack_components"] = info["components"]
    results.update(summarise(correct, float(config.eps), [*batch_attacks, *(["autoattack"] if run_aa else [])], seconds))
    logger.info(
        "attack suite on %d images (eps %.4f): %s",
        n, config.eps, ", ".join(f"{k} {results[k]:.2f}%" for k in ("clean", *results["attacks"], "worst_case")),
    )
    return results


def summarise(correct: Mapping[str, torch.Tensor], eps: float, attacks: Sequence[str],
              seconds: Mapping[str, float]) -> dict[str, Any]:
    """The summary :func:`evaluate_attacks` returns for per-image outcomes ``correct`` (``clean`` and each attack).

    Accuracy in percent per name, ``worst_case`` over the outcomes that cover every image,
    ``n_images``, ``eps``, ``attacks``, ``seconds`` and ``per_sample`` (``correct`` itself).
    """
    n = correct["clean"].shape[0]
    full = [flags for flags in correct.values() if flags.shape[0] == n]
    return {
        **{name: percent(flags) for name, flags in correct.items()},
        "worst_case": percent(torch.stack(full).all(dim=0)),
        "n_images": n,
        "eps": float(eps),
        "attacks": list(attacks),
        "seconds": dict(seconds),
        "per_sample": dict(correct),
    }


def scalar_metrics(results: Mapping[str, Any]) -> dict[str, Any]:
    """``results`` without the per-sample tensors, ready for a JSON metrics file."""
    return {key: value for key, value in results.items() if key != "per_sample"}
