"""The evaluation protocol as one library call: a checkpoint and the data in, the metrics and records out.

:func:`evaluate_checkpoint` is what the evaluation node, the study, ``tune_test`` and a script or
notebook all run (RobustBench's ``benchmark`` is the model). Every number is measured with the
model in eval mode, fp32, on the test split or a fixed, class-stratified and labelled subset of
it: the attack suite (clean, FGSM, PGD-k, CW-inf, AutoAttack on a nested subset), the
gradient-masking checks, the robust gap, the background shift and, where the data has them, the
background-reliance metrics; the last checkpoint is attacked too.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from dhat.attention.gradcam import grad_cam
from dhat.checkpoints import load_classifier
from dhat.config import resolve_device
from dhat.data.splits import index_set, stratified_indices, take_subset
from dhat.evaluation.bias import background_bias_metrics
from dhat.evaluation.config import AttackSuiteConfig
from dhat.evaluation.gap import robust_gap
from dhat.evaluation.records import POSITIONS_SUFFIX, attack_names
from dhat.evaluation.registry import is_batch_attack, of_family, steps
from dhat.evaluation.sanity import sanity_checks
from dhat.evaluation.sections import EvaluationSettings
from dhat.evaluation.suite import evaluate_attacks, scalar_metrics, summarise
from dhat.intervals import accuracy_interval
from dhat.tensors import to_device_set

__all__ = ["IN_DISTRIBUTION", "Evaluation", "evaluate_checkpoint", "same_weights", "score_attacks"]

logger = logging.getLogger(__name__)


class Evaluation(NamedTuple):
    """What :func:`evaluate_checkpoint` returns (the evaluation node's three outputs, in this order)."""

    metrics: dict[str, Any]
    attention_examples: dict[str, np.ndarray]
    per_image: dict[str, np.ndarray]


#: The test variant drawn from the training distribution (embedded data); see dhat.data.embedded.
IN_DISTRIBUTION = "test_in_distribution"


def _describe(config: AttackSuiteConfig, n_eval: int, n_test: int, aa_label: str | None, n_aa: int | None) -> str:
    subset = f"a fixed subset of {n_eval} of the {n_test} test images" if n_eval < n_test else f"all {n_test} test images"
    steps = ", ".join(f"PGD-{k}" for k in sorted(config.pgd_steps))
    aa = ""
    if aa_label:
        where = f" on a fixed class-stratified subset of {n_aa} of these images" if n_aa and n_aa < n_eval else ""
        aa = f"; AutoAttack: {aa_label}{where}"
    return (
        f"{subset}; L-inf eps {config.eps * 255:.0f}/255; FGSM, {steps} (step {config.step_size * 255:.0f}/255, "
        f"uniform random start, one run), CW-inf ({config.cw_steps} steps){aa}"
    )


def _variant_sets(
    test_variants: Mapping[str, Mapping[str, np.ndarray]],
    test_set: Mapping[str, np.ndarray],
    positions: np.ndarray,
    device: torch.device,
):
    """The test subset and its analysis variants restricted to the same digits (same positions)."""
    sets = {"test": test_set, **test_variants}
    out = {}
    for name, image_set in sets.items():
        data = to_device_set(index_set(image_set, positions), device, name=name, bound="evaluation.n_eval")
        masks = None if data.masks is None else data.masks >= 128
        out[name] = (data.float_images(), data.labels, masks)
    return out


def _flatten_bias(bias: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, values in bias.get("variants", {}).items():
        flat[f"acc_{name}"] = values.get("accuracy")
        if "cam_iou" in values:
            flat[f"cam_iou_{name}"] = values["cam_iou"]
            flat[f"cam_fg_mass_{name}"] = values.get("cam_foreground_mass")
    flat["aligned_minus_random"] = bias.get("aligned_minus_random")
    return flat


def _background_shift(model, in_distribution, decorrelated: dict[str, Any], config, attacks) -> dict[str, Any]:
    """Accuracy on the test digits drawn as in training minus the same on decorrelated backgrounds (same digits)."""
    on_training_backgrounds = evaluate_attacks(model, in_distribution.float_images(), in_distribution.labels, config,
                                                  attacks=list(attacks))
    return {
        name: {"in_distribution": on_training_backgrounds[name], "decorrelated": decorrelated[name],
               "shift": on_training_backgrounds[name] - decorrelated[name]}
        for name in ("clean", *attacks)
    }


def _checkpoint_facts(checkpoint: dict[str, Any]) -> dict[str, Any]:
    meta = checkpoint["metadata"]
    return {
        "best_epoch": meta.get("best_epoch"),
        "epochs": meta.get("epochs"),
        "selected_on": meta.get("selected_on"),
        "diverged_epoch": meta.get("diverged_epoch"),
        "weights": meta.get("weights", "trained model"),
        "device": meta.get("device", "unknown"),
    }


def same_weights(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two project checkpoints hold the same architecture and the same tensors (weights and buffers)."""
    if a["metadata"].get("model") != b["metadata"].get("model") or a["state_dict"].keys() != b["state_dict"].keys():
        return False
    return all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def _attack_last(model_best: Mapping[str, Any], model_last: Mapping[str, Any], best: Mapping[str, Any],
                 images: torch.Tensor, labels: torch.Tensor, config: AttackSuiteConfig, attacks: Sequence[str],
                 device: torch.device) -> dict[str, Any]:
    """The last checkpoint under ``attacks``; when it is the selected one (training ended on its best
    epoch), the outcomes of ``best`` (the same attacks, images and seeds: the same numbers) are used."""
    if same_weights(model_best, model_last) and all(is_batch_attack(a) and a in best["per_sample"] for a in attacks):
        outcomes = {name: best["per_sample"][name] for name in ("clean", *attacks)}
        logger.info("The last checkpoint is the selected one: its %s are the selected checkpoint's",
                    ", ".join(attacks))
        return {**summarise(outcomes, config.eps, attacks, {"gradient_attacks": 0.0}), "same_as_best": True}
    return evaluate_attacks(load_classifier(model_last, device), images, labels, config, attacks=list(attacks))


def evaluate_checkpoint(
    model_best: Mapping[str, Any],
    model_last: Mapping[str, Any] | None,
    train_set: Mapping[str, np.ndarray],
    test_set: Mapping[str, np.ndarray],
    test_variants: Mapping[str, Mapping[str, np.ndarray]],
    dataset_info: Mapping[str, Any],
    evaluation: EvaluationSettings | Mapping[str, Any] | None,
    device: str = "auto",
) -> Evaluation:
    """The evaluation protocol on one checkpoint: attack suite, sanity checks, robust gap, background reliance.

    Args:
        model_best: the checkpoint scored (a project checkpoint: ``state_dict`` and ``metadata.model``).
        model_last: the last epoch's checkpoint, attacked with ``evaluation.last_checkpoint_attacks``
            (``None`` skips it).
        train_set: training images, for the robust gap's fixed training subset.
        test_set, test_variants: the test split and its analysis variants (may be empty).
        dataset_info: the data's description (``has_true_masks``).
        evaluation: the ``evaluation`` section (or its settings).
        device: ``auto``, ``cpu`` or ``cuda``.

    Returns:
        :class:`Evaluation`: the metrics (JSON; every accuracy with a 95% bootstrap interval over
        the test images), the Grad-CAM maps of a few test images for the report's figure
        (``{"indices": int64 [n], "maps": float32 [n, H, W]}``) and the per-image record
        (:mod:`dhat.evaluation.records`), from which paired comparisons are drawn.
    """
    settings = evaluation if isinstance(evaluation, EvaluationSettings) else EvaluationSettings.from_dict(evaluation)
    config = settings.suite
    torch_device = resolve_device(device)
    n_test = len(test_set["labels"])
    n_eval = min(settings.n_eval or n_test, n_test)
    # A fixed, class-stratified subset: the same images for every method and every run.
    positions = stratified_indices(test_set["labels"], n_eval, seed=settings.subset_seed)
    test = to_device_set(index_set(test_set, positions), torch_device, name="test_set", bound="evaluation.n_eval")
    images, labels = test.float_images(), test.labels
    started = time.perf_counter()
    model = load_classifier(model_best, torch_device)
    logger.info("Evaluating %s (selected checkpoint, epoch %s) on %d test images",
                model_best["metadata"].get("label"), model_best["metadata"].get("epoch"), n_eval)
    # AutoAttack on a nested, class-stratified subset of the evaluated images (the same for every method).
    n_aa = min(settings.autoattack_n or n_eval, n_eval)
    aa_local = np.sort(stratified_indices(test_set["labels"][positions], n_aa, seed=settings.subset_seed))
    best = evaluate_attacks(model, images, labels, config,
                               autoattack_indices=torch.as_tensor(aa_local) if n_aa < n_eval else None)
    per_image = {"positions": positions.astype(np.int64),
                 **{name: flags.numpy().astype(bool) for name, flags in best["per_sample"].items()}}
    if "autoattack" in per_image and n_aa < n_eval:
        per_image[f"autoattack{POSITIONS_SUFFIX}"] = positions[aa_local].astype(np.int64)
    checks = sanity_checks(model, images, labels, config, best)
    train = to_device_set(take_subset(train_set, settings.robust_gap.n, seed=settings.subset_seed), torch_device,
                          name="train_set", bound="evaluation.robust_gap.n")
    # Robust overfitting alone: training images against test digits drawn from the training distribution
    # (where the data has that variant); the drop from it to the decorrelated test images is the background shift.
    in_distribution = test_variants.get(IN_DISTRIBUTION)
    gap_test = test if in_distribution is None else to_device_set(index_set(in_distribution, positions), torch_device,
                                                                  name=IN_DISTRIBUTION, bound="evaluation.n_eval")
    gap = robust_gap(model, train.float_images(), train.labels, gap_test.float_images(), gap_test.labels, config,
                        attacks=settings.gap_attacks())
    gap["test_images"] = "test" if in_distribution is None else IN_DISTRIBUTION
    metrics: dict[str, Any] = {
        "method_config": model_best["metadata"].get("method"),
        "checkpoint": _checkpoint_facts(model_best),
        "masks": model_best["metadata"].get("masks"),
        "evaluation": {
            "n_eval": n_eval,
            "n_test": n_test,
            "subset": n_eval < n_test,
            "eps": config.eps,
            "autoattack_label": best.get("autoattack_label"),
            "autoattack_n": best.get("autoattack_n_images"),
            "description": _describe(config, n_eval, n_test, best.get("autoattack_label"), best.get("autoattack_n_images")),
            "device": str(torch_device),
            "precision": "fp32",  # evaluation_context: autocast off, fp32 weights and inputs, whatever training used
        },
        "best": scalar_metrics(best),
        "intervals": {name: accuracy_interval(per_image[name], seed=settings.subset_seed).as_dict()
                      for name in attack_names(per_image)},
        "sanity_checks": checks,
        "robust_gap": gap,
    }
    if in_distribution is not None:
        metrics["background_shift"] = _background_shift(model, gap_test, best, config, settings.gap_attacks())
    if dataset_info.get("has_true_masks") or test_variants:
        bias = background_bias_metrics(
            model, _variant_sets(test_variants, test_set, positions, torch_device), settings.cam_threshold,
            batch_size=config.batch_size,
        )
        metrics["bias"] = _flatten_bias(bias)
        metrics["bias_detail"] = bias
    n_examples = min(settings.attention_examples, n_eval)
    maps = grad_cam(model, images[:n_examples], labels[:n_examples]) if n_examples else images.new_zeros((0, *images.shape[-2:]))
    examples = {"indices": positions[:n_examples].astype(np.int64), "maps": maps.detach().cpu().numpy().astype(np.float32)}
    if settings.last_checkpoint_attacks and model_last is not None:
        metrics["last"] = scalar_metrics(_attack_last(model_best, model_last, best, images, labels, config,
                                                      settings.last_checkpoint_attacks, torch_device))
    metrics["evaluation"]["seconds"] = round(time.perf_counter() - started, 2)
    failed = [c["name"] for c in checks if not c.get("passed", False)]
    if failed:
        logger.warning("sanity check(s) failed: %s (possible gradient masking)", ", ".join(failed))
    return Evaluation(metrics, examples, per_image)


def score_attacks(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, suite: AttackSuiteConfig,
                  attacks: Sequence[str], seed: int = 0) -> dict[str, Any]:
    """The light protocol of the sweeps: clean and ``attacks`` accuracy (percent) with 95% bootstrap intervals and
    the per-image flags, on every image given (the suite's PGD lengths are those named; no AutoAttack).

    Returns ``{"accuracy": {attack: {estimate, low, high, ...}}, "correct": {attack: [0/1, ...]},
    "n_images": n}`` (JSON-ready).
    """
    lengths = sorted({steps(a) for a in of_family(attacks, "pgd")}) or [10]
    config = dataclasses.replace(suite, pgd_steps=tuple(lengths), autoattack=False)
    results = evaluate_attacks(model, images, labels, config, attacks=list(attacks))
    flags = {name: results["per_sample"][name].numpy() for name in ("clean", *attacks)}
    return {
        "accuracy": {name: accuracy_interval(f, seed=seed).as_dict() for name, f in flags.items()},
        "correct": {name: f.astype(int).tolist() for name, f in flags.items()},
        "n_images": int(images.shape[0]),
    }
