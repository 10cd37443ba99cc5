"""Checks that catch gradient masking: PGD beats FGSM, accuracy vanishes as eps grows, white-box beats Square."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from dhat.attacks import cross_entropy_loss, signed_gradient_attack
from dhat.evaluation.autoattack import run_square
from dhat.evaluation.config import GRADIENT_FREE_COMPONENTS, AttackSuiteConfig
from dhat.evaluation.inference import (
    check_inputs,
    evaluation_context,
    iterate_batches,
    percent,
    predict_raw,
    subset_indices,
)
from dhat.evaluation.suite import evaluate_attacks

__all__ = ["sanity_checks"]

logger = logging.getLogger(__name__)


def sanity_checks(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: AttackSuiteConfig,
    results: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Checks that catch gradient masking; each failed one is logged as a WARNING.

    1. ``pgd_beats_fgsm``: the strongest PGD's accuracy <= FGSM's + ``sanity_tolerance``.
    2. ``accuracy_vanishes_with_eps``: PGD accuracy over ``sanity_eps_sweep`` is
       non-increasing (within the tolerance) and ends below ``sanity_max_accuracy``.
    3. ``white_box_beats_square``: on a fixed subset, the gradient attacks'
       accuracy (a point counts if it survives FGSM, PGD, CW and any gradient
       AutoAttack components run) <= a stand-alone Square attack's + tolerance.
       Square is run alone because AutoAttack standard folds it into its
       cumulative number.

    Args:
        results: output of :func:`evaluate_attacks` on the same images; attacks it
            lacks (FGSM, PGD, CW) are run here. ``None`` runs them all.

    Returns:
        One dict per check: ``name``, ``passed`` (bool), ``detail`` (str), and the
        measured numbers (``values``).
    """
    device, images, labels = check_inputs(model, images, labels)
    strongest_pgd = config.pgd_names()[-1]
    needed = ["fgsm", strongest_pgd, "cw"]
    results = dict(results or {})
    per_sample: dict[str, torch.Tensor] = dict(results.get("per_sample", {}))
    if results.get("autoattack_n_images", images.shape[0]) != images.shape[0]:
        per_sample.pop("autoattack", None)  # run on a labelled subset: not comparable image by image here
    for name, flags in per_sample.items():
        if flags.shape[0] != images.shape[0]:
            raise ValueError(
                f"results['per_sample'][{name!r}] has {flags.shape[0]} entries but images has {images.shape[0]}; "
                "pass the results of evaluate_attacks on these same images"
            )
    missing = [name for name in needed if name not in per_sample]
    if missing:
        extra = evaluate_attacks(model, images, labels, config, attacks=missing)
        per_sample.update({name: extra["per_sample"][name] for name in missing})
    tol = config.sanity_tolerance
    checks: list[dict[str, Any]] = []

    # (a) An iterative attack must do at least as well as its single-step version.
    acc_fgsm, acc_pgd = percent(per_sample["fgsm"]), percent(per_sample[strongest_pgd])
    checks.append({
        "name": "pgd_beats_fgsm",
        "passed": acc_pgd <= acc_fgsm + tol,
        "detail": f"{strongest_pgd} accuracy {acc_pgd:.2f}% vs FGSM {acc_fgsm:.2f}% (tolerance {tol} points)",
        "values": {"fgsm": acc_fgsm, strongest_pgd: acc_pgd},
    })

    subset = subset_indices(images.shape[0], config.sanity_subset, config.seed, device)
    x_sub, y_sub = images[subset], labels[subset]
    # (b) With a large enough ball every image can be turned into any other: accuracy must vanish.
    sweep: list[float] = []
    with evaluation_context(model):
        for eps in config.sanity_eps_sweep:
            step = config.sanity_step_factor * eps / config.sanity_pgd_steps
            flags = []
            for index, start, end in iterate_batches(x_sub.shape[0], config.batch_size, f"eps {eps:.3f}", config.progress):
                torch.manual_seed(config.seed + index)
                x_adv, _ = signed_gradient_attack(model, x_sub[start:end], cross_entropy_loss(y_sub[start:end]), eps,
                                                  step, config.sanity_pgd_steps, start="uniform")
                with torch.no_grad():
                    flags.append(model(x_adv).argmax(1) == y_sub[start:end])
            sweep.append(percent(torch.cat(flags)) if flags else 0.0)
    monotone = all(later <= earlier + tol for earlier, later in zip(sweep, sweep[1:]))
    vanishes = sweep[-1] <= config.sanity_max_accuracy
    checks.append({
        "name": "accuracy_vanishes_with_eps",
        "passed": monotone and vanishes,
        "detail": (
            f"PGD-{config.sanity_pgd_steps} accuracy over eps "
            + ", ".join(f"{e * 255:.0f}/255: {a:.2f}%" for e, a in zip(config.sanity_eps_sweep, sweep))
            + f" on {x_sub.shape[0]} images; non-increasing: {monotone}; "
            f"largest eps below {config.sanity_max_accuracy}%: {vanishes}"
        ),
        "values": {"eps": list(config.sanity_eps_sweep), "accuracy": sweep},
    })

    # (c) A gradient-free attack must not beat the gradient attacks.
    square_size = config.square_subset if config.square_subset is not None else config.sanity_subset
    square_idx = subset[: x_sub.shape[0] if square_size is None else square_size]
    with evaluation_context(model):
        x_sq = run_square(model, images[square_idx], labels[square_idx], config.eps, config.square_queries,
                          config.seed, config.batch_size)
        square_flags = (predict_raw(model, x_sq, config.batch_size).argmax(1) == labels[square_idx]).cpu()
    white_names = [name for name in per_sample if name not in ("clean", "autoattack")]
    aa_components = set(config.autoattack_components())
    if "autoattack" in per_sample and not (aa_components & GRADIENT_FREE_COMPONENTS):
        white_names.append("autoattack")  # purely gradient-based AutoAttack counts as white-box
    cpu_idx = square_idx.cpu()
    white_flags = torch.stack([per_sample[name][cpu_idx] for name in white_names]).all(dim=0)
    acc_white, acc_square = percent(white_flags), percent(square_flags)
    checks.append({
        "name": "white_box_beats_square",
        "passed": acc_white <= acc_square + tol,
        "detail": (
            f"white-box ({', '.join(white_names)}) accuracy {acc_white:.2f}% vs Square "
            f"({config.square_queries} queries, subset of {square_idx.numel()} images) {acc_square:.2f}%"
        ),
        "values": {"white_box": acc_white, "square": acc_square, "n_images": int(square_idx.numel())},
    })
    for check in checks:
        if not check["passed"]:
            logger.warning("sanity check %s FAILED (possible gradient masking): %s", check["name"], check["detail"])
        else:
            logger.info("sanity check %s passed: %s", check["name"], check["detail"])
    return checks

