"""Node of the ``evaluation`` pipeline (one namespace per method).

Every number is measured with the model in eval mode, fp32, on the test split
(or a fixed, labelled subset of it); the checkpoint was selected on the
validation split during training.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from dhat import evaluation as ev
from dhat.attention import grad_cam
from dhat.checkpoints import load_classifier
from dhat.config import resolve_device
from dhat.data.splits import index_set, stratified_indices, take_subset
from dhat.tensors import to_device_set

logger = logging.getLogger(__name__)

_NODE_KEYS = {"n_eval", "subset_seed", "suite", "robust_gap", "last_checkpoint_attacks", "cam_threshold", "attention_examples"}


def evaluation_config(params: dict[str, Any]) -> ev.AttackSuiteConfig:
    """Validate the ``evaluation`` section and return the attack-suite settings."""
    unknown = set(params) - _NODE_KEYS
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(f'evaluation.{k}' for k in sorted(unknown))}; valid: {', '.join(sorted(_NODE_KEYS))}")
    n_eval = params.get("n_eval")
    if n_eval is not None and int(n_eval) < 1:
        raise ValueError(f"evaluation.n_eval must be >= 1 or null (all test images), got {n_eval}")
    threshold = float(params.get("cam_threshold", 0.1))
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"evaluation.cam_threshold must be in [0, 1], got {threshold}")
    return ev.AttackSuiteConfig.from_dict(params.get("suite"), section="evaluation.suite")


def _describe(config: ev.AttackSuiteConfig, n_eval: int, n_test: int, aa_label: str | None) -> str:
    subset = f"a fixed subset of {n_eval} of the {n_test} test images" if n_eval < n_test else f"all {n_test} test images"
    steps = ", ".join(f"PGD-{k}" for k in sorted(config.pgd_steps))
    aa = f"; AutoAttack: {aa_label}" if aa_label else ""
    return (
        f"{subset}; L-inf eps {config.eps * 255:.0f}/255; FGSM, {steps} (step {config.step_size * 255:.0f}/255, "
        f"uniform random start, one run), CW-inf ({config.cw_steps} steps){aa}"
    )


def _variant_sets(
    test_variants: dict[str, dict[str, np.ndarray]],
    test_set: dict[str, np.ndarray],
    positions: np.ndarray,
    device: torch.device,
):
    """The test subset and its analysis variants restricted to the same digits (same positions)."""
    sets = {"test": test_set, **test_variants}
    out = {}
    for name, image_set in sets.items():
        data = to_device_set(index_set(image_set, positions), device, name=name)
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


def evaluate_method(
    model_best: dict[str, Any],
    model_last: dict[str, Any],
    train_set: dict[str, np.ndarray],
    test_set: dict[str, np.ndarray],
    test_variants: dict[str, dict[str, np.ndarray]],
    dataset_info: dict[str, Any],
    params: dict[str, Any],
    device: str,
    namespace: str,
) -> dict[str, Any]:
    """Attack suite, sanity checks, robust gap and (with true masks) background reliance of one method."""
    config = evaluation_config(params)
    torch_device = resolve_device(device)
    n_test = len(test_set["labels"])
    n_eval = min(int(params.get("n_eval") or n_test), n_test)
    # A fixed, class-stratified subset: the same images for every method and every run.
    positions = stratified_indices(test_set["labels"], n_eval, seed=int(params.get("subset_seed", 0)))
    subset = index_set(test_set, positions)
    test = to_device_set(subset, torch_device, name="test_set")
    images, labels = test.float_images(), test.labels
    started = time.perf_counter()
    model = load_classifier(model_best, torch_device)
    logger.info("Evaluating %s (selected checkpoint, epoch %s) on %d test images", namespace, model_best["metadata"].get("epoch"), n_eval)
    best = ev.evaluate_attacks(model, images, labels, config)
    checks = ev.sanity_checks(model, images, labels, config, best)
    gap_params = params.get("robust_gap", {})
    train = to_device_set(take_subset(train_set, int(gap_params.get("n", 200)), seed=int(params.get("subset_seed", 0))), torch_device, name="train_set")
    gap_attacks = tuple(a for a in gap_params.get("attacks", ["pgd10", "autoattack"]) if a != "autoattack" or config.autoattack)
    gap = ev.robust_gap(model, train.float_images(), train.labels, images, labels, config, attacks=gap_attacks)
    metrics: dict[str, Any] = {
        "method": namespace,
        "method_config": model_best["metadata"].get("method"),
        "checkpoint": {
            "best_epoch": model_best["metadata"].get("best_epoch"),
            "epochs": model_best["metadata"].get("epochs"),
            "selected_on": model_best["metadata"].get("selected_on"),
            "diverged_epoch": model_best["metadata"].get("diverged_epoch"),
            "weights": model_best["metadata"].get("weights", "trained model"),
        },
        "evaluation": {
            "n_eval": n_eval,
            "n_test": n_test,
            "subset": n_eval < n_test,
            "eps": config.eps,
            "autoattack_label": best.get("autoattack_label"),
            "description": _describe(config, n_eval, n_test, best.get("autoattack_label")),
            "device": str(torch_device),
        },
        "best": ev.scalar_metrics(best),
        "sanity_checks": checks,
        "robust_gap": gap,
    }
    if dataset_info.get("has_true_masks") or test_variants:
        bias = ev.background_bias_metrics(
            model, _variant_sets(test_variants, test_set, positions, torch_device), float(params.get("cam_threshold", 0.1)), batch_size=config.batch_size
        )
        metrics["bias"] = _flatten_bias(bias)
        metrics["bias_detail"] = bias
    n_examples = min(int(params.get("attention_examples", 6)), n_eval)
    if n_examples > 0:
        maps = grad_cam(model, images[:n_examples], labels[:n_examples])
        metrics["attention_examples"] = {
            "indices": [int(i) for i in positions[:n_examples]],
            "maps": np.round(maps.cpu().numpy(), 3).tolist(),
        }
    last_attacks = params.get("last_checkpoint_attacks", ["pgd10", "pgd20", "pgd50"])
    if last_attacks:
        last = ev.evaluate_attacks(load_classifier(model_last, torch_device), images, labels, config, attacks=last_attacks)
        metrics["last"] = ev.scalar_metrics(last)
    metrics["evaluation"]["seconds"] = round(time.perf_counter() - started, 2)
    failed = [c["name"] for c in checks if not c.get("passed", False)]
    if failed:
        logger.warning("%s: sanity check(s) failed: %s (possible gradient masking)", namespace, ", ".join(failed))
    return metrics

