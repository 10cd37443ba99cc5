"""Nodes of the ``study`` pipeline: a seeded training unit per (seed, method), and the aggregation."""

from __future__ import annotations

import logging
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from dhat.analysis.figures import mask_examples_figure, seed_curves_figure
from dhat.data.splits import take_subset
from dhat.engine.fitting import split_method_params
from dhat.methods import create_method
from dhat.methods.catalog import PAIRED_COMPARISONS, display_name
from dhat.pipelines.mask_precomputation.nodes import train_mask_model
from dhat.pipelines.training.nodes import train_method_with
from dhat.stats.study import (
    StudySettings,
    collect_runs,
    nested_runs,
    parse_unit_key,
    stack_runs,
    study_markdown,
    study_paired_table,
    study_table,
)

logger = logging.getLogger(__name__)


def train_method_with_seed(seed: int, **inputs: Any) -> tuple[dict[str, Any], dict[str, Any], pd.DataFrame]:
    """:func:`~dhat.pipelines.training.nodes.train_method` (the same keyword inputs) with this replicate's seed."""
    return train_method_with(inputs, seed=seed)


def train_mask_model_with_seed(seed: int, train_set: dict[str, np.ndarray], val_set: dict[str, np.ndarray],
                               dataset_info: dict[str, Any], mask_model: dict[str, Any], device: str,
                               training_state: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """:func:`~dhat.pipelines.mask_precomputation.nodes.train_mask_model` with this replicate's seed."""
    seeded = {**mask_model, "training": {**(mask_model.get("training") or {}), "seed": seed}}
    return train_mask_model(train_set, val_set, dataset_info, seeded, device, training_state)


def aggregate_study(study: dict[str, Any], **results: Any) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Mean and 95% interval over seeds per method, and paired differences, from every unit's results.

    Keyword names are ``seed<k>__<method>__metrics`` and ``seed<k>__<method>__per_image``
    (the pipeline builds them from its namespaces); the pairs are ``study.comparisons``.
    """
    settings = StudySettings.from_dict(study)
    per_image, description = collect_runs(results)
    stacked = stack_runs(per_image)
    seeds = sorted({s for s, _ in per_image})
    masks = ("one mask model per seed (trained with that seed)" if settings.mask_model_per_seed
             else "one mask model shared by every seed")
    description = (f"{len(seeds)} training seeds ({', '.join(map(str, seeds))}) per method, {masks}; every run is "
                   f"scored on the same test images. Each cell: mean accuracy (%) over the seeds with its 95% "
                   f"t-interval. " + description)
    pairs = settings.comparisons if settings.comparisons is not None else PAIRED_COMPARISONS
    table, paired = study_table(stacked), study_paired_table(stacked, pairs=pairs)
    logger.info("Study over %d seeds and %d methods", len(seeds), len(stacked))
    return table, paired, study_markdown(table, paired, description)


def tabulate_study_masks(**inputs: Any) -> pd.DataFrame:
    """One row per mask model (a seed's, or the shared one) and mask-needing method: the mask model's validation
    accuracy, the share of training pixels below each Grad-CAM threshold, and the background coverage of the
    method's rule (the share of training pixels it calls background).

    Keyword names: ``<seed<k> | shared>__quality`` / ``__history`` (the mask model) and
    ``seed<k>__<method>__metrics`` (the units).
    """
    parsed = {key: parse_unit_key(key) for key in inputs}
    models: dict[int | str, dict[str, Any]] = {}
    for key, (replicate, rest) in parsed.items():
        if len(rest) == 1:
            models.setdefault(replicate, {})[rest[0]] = inputs[key]
    rows: list[dict[str, Any]] = []
    for key, (replicate, rest) in parsed.items():
        metrics = inputs[key]
        if len(rest) != 2 or not (metrics.get("masks") or {}):
            continue
        model = models.get(replicate) or models.get("shared") or {}
        history = model.get("history")
        accuracy = None
        if isinstance(history, pd.DataFrame) and "val_clean" in history:
            accuracy = float(history["val_clean"].max())
        quality = model.get("quality") or {}
        masks = metrics["masks"]
        rows.append({
            "seed": replicate, "method": rest[0], "Method": display_name(rest[0]),
            "mask_model_val_clean": accuracy, "rule": masks.get("rule"),
            "omega": masks.get("omega") if masks.get("rule") == "absolute" else None,
            "background_share": masks.get("background_share") if masks.get("rule") == "quantile" else None,
            "coverage": masks.get("coverage"), "coverage_min": masks.get("coverage_min"),
            "coverage_max": masks.get("coverage_max"), "iou_true_background": masks.get("iou_true_background"),
            **{k: v for k, v in quality.items() if k.startswith("background_share@")},
        })
    return pd.DataFrame(rows).sort_values(["method", "seed"], ignore_index=True) if rows else pd.DataFrame()


#: Training images (one per class, a fixed draw) the mask figure shows.
MASK_FIGURE_IMAGES = 6


def draw_study_masks(train_set: dict[str, np.ndarray], attention_masks: dict[str, np.ndarray],
                     dataset_info: dict[str, Any], **methods: dict[str, Any]) -> plt.Figure:
    """A few training images, their Grad-CAM maps (the first seed's mask model) and each DHAT's background image."""
    rules = {}
    for namespace, section in methods.items():
        name, hyper, _ = split_method_params(section, f"{namespace}.method")
        method = create_method(name, hyper, section=f"{namespace}.method.params")
        settings = method.mask_settings() if method.needs_masks else None
        if settings is not None and settings.source == "gradcam":
            rule = settings.rule
            label = f"omega {rule.omega:g}" if rule.rule == "absolute" else f"quantile {rule.background_share:g}"
            shown = display_name(namespace)
            rules[shown if label in shown else f"{shown} ({label})"] = rule
    picked = take_subset({**train_set, "maps": attention_masks["masks"]}, MASK_FIGURE_IMAGES, seed=0)
    names = [dataset_info["class_names"][int(y)] for y in picked["labels"]]
    return mask_examples_figure(picked["images"], picked["maps"], names, rules)


def draw_study_curves(**histories: pd.DataFrame) -> plt.Figure:
    """Every unit's validation curves (keywords ``seed<k>__<method>__history``): one panel per method, a line per seed."""
    by_unit = {(seed, method): kinds["history"] for seed, methods in nested_runs(histories).items()
               for method, kinds in methods.items()}
    return seed_curves_figure(by_unit)
