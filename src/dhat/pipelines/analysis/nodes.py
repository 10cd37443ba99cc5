"""Nodes of the ``analysis`` pipeline: per method (attention under +-eps, robustness against the radius),
then one node per figure over every analysed method, and the compute-cost table.

Every number: the selected checkpoint, eval mode, fp32, on the test split (or a fixed,
class-stratified subset of it, stated in the tables' ``n_images``).
"""

from __future__ import annotations

import logging
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from dhat.analysis import AnalysisSettings, attention_shift, compute_cost_table, robustness_vs_eps
from dhat.analysis.figures import attention_shift_figure, robustness_vs_eps_figure
from dhat.analysis.radius import evaluated_flags
from dhat.checkpoints import load_classifier
from dhat.config import resolve_device
from dhat.data.splits import index_set, take_positions, take_subset
from dhat.evaluation.sections import EvaluationSettings
from dhat.methods.catalog import order_methods
from dhat.tensors import to_device_set

logger = logging.getLogger(__name__)


def _test_subset(test_set: dict[str, np.ndarray], n_images: int | None, seed: int, device: Any, bound: str):
    """The fixed class-stratified subset of the test split (all of it for ``None``), on ``device``; ``bound`` names
    the ``n_images`` parameter in the error for a streamed split too large to hold."""
    return to_device_set(take_subset(test_set, n_images, seed=seed), device, name="test_set", bound=bound)


def analyse_attention_shift(model_best: dict[str, Any], test_set: dict[str, np.ndarray], analysis: dict[str, Any],
                            device: str) -> pd.DataFrame:
    """IoU of the method's Grad-CAM region with the clean and true regions at every signed radius."""
    settings = AnalysisSettings.from_dict(analysis)
    config = settings.attention_shift
    torch_device = resolve_device(device)
    test = _test_subset(test_set, config.n_images, config.subset_seed, torch_device, "analysis.attention_shift.n_images")
    model = load_classifier(model_best, torch_device)
    truth = None if test.masks is None else test.masks >= 128
    return attention_shift(model, test.float_images(), test.labels, config, truth, progress=settings.progress)


def analyse_robustness_vs_eps(model_best: dict[str, Any], test_set: dict[str, np.ndarray], analysis: dict[str, Any],
                              device: str, per_image: dict[str, np.ndarray] | None = None,
                              evaluation: dict[str, Any] | None = None) -> pd.DataFrame:
    """Accuracy under FGSM, PGD and CW at every radius of ``analysis.robustness_vs_eps``.

    ``per_image`` and ``evaluation`` (``train_eval`` passes them): the evaluation of the same
    checkpoint in the same run and its settings; at the evaluation's radius its outcomes are
    used where the sweep would repeat them exactly.
    """
    config = AnalysisSettings.from_dict(analysis).robustness_vs_eps
    torch_device = resolve_device(device)
    positions = take_positions(test_set["labels"], config.n_images, config.subset_seed)
    subset = test_set if len(positions) == len(test_set["labels"]) else index_set(test_set, positions)  # no copy of all
    test = to_device_set(subset, torch_device, name="test_set", bound="analysis.robustness_vs_eps.n_images")
    model = load_classifier(model_best, torch_device)
    known: dict[float, dict[str, np.ndarray]] = {}
    if per_image is not None and evaluation is not None:
        known = evaluated_flags(per_image, EvaluationSettings.from_dict(evaluation).suite, config, positions)
    for eps, flags in known.items():
        logger.info("robustness vs radius at %.2f/255: %s from the evaluation's record", eps * 255,
                    ", ".join(a for a in config.attacks if a in flags))
    return robustness_vs_eps(model, test.float_images(), test.labels, config, known)


def _stack(results: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One table with a ``method`` column: the namespace each result was found under."""
    frames = [results[m].drop(columns="method", errors="ignore").assign(method=m) for m in order_methods(list(results))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _empty_figure(message: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5, 1.5))
    ax.text(0.5, 0.5, message, ha="center", va="center")
    ax.set_axis_off()
    return fig


def draw_attention_shift(attention_shift_results: dict[str, pd.DataFrame],
                         analysis: dict[str, Any]) -> tuple[pd.DataFrame, plt.Figure]:
    """Every analysed method's attention-shift table stacked, and its figure."""
    table = _stack(attention_shift_results)
    if table.empty:
        return table, _empty_figure("no attention-shift results yet: run kedro run --pipelines=train_eval")
    share = AnalysisSettings.from_dict(analysis).attention_shift.attention_share
    return table, attention_shift_figure(table, share)


def draw_robustness_vs_eps(robustness_vs_eps_results: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, plt.Figure]:
    """Every analysed method's robustness-vs-radius table stacked, and its figure."""
    table = _stack(robustness_vs_eps_results)
    if table.empty:
        return table, _empty_figure("no robustness-vs-radius results yet: run kedro run --pipelines=train_eval")
    return table, robustness_vs_eps_figure(table)


def tabulate_compute_cost(training_histories: dict[str, pd.DataFrame],
                          evaluated_metrics: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Seconds per training epoch of every evaluated method and the ratio to PGD-AT (paper table 3)."""
    methods = order_methods([m for m in training_histories if "best" in evaluated_metrics.get(m, {})])
    devices = {m: evaluated_metrics[m].get("checkpoint", {}).get("device", "unknown") for m in methods}
    table = compute_cost_table({m: training_histories[m] for m in methods}, devices)
    logger.info("Compute cost over %d method(s)", len(table))
    return table
