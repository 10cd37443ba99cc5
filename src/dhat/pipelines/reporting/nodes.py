"""Node of the ``reporting`` pipeline: aggregate every evaluated method into tables, Markdown and figures."""

from __future__ import annotations

import logging
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from dhat.analysis import sections
from dhat.methods.catalog import order_methods
from dhat.stats import reporting
from dhat.stats.comparisons import mask_table, paired_table

logger = logging.getLogger(__name__)


def build_report(  # noqa: PLR0913, PLR0917 - one argument per catalog input
    evaluated_metrics: dict[str, dict[str, Any]],
    attention_examples: dict[str, dict[str, np.ndarray]],
    per_image: dict[str, dict[str, np.ndarray]],
    training_histories: dict[str, pd.DataFrame],
    mask_quality: dict[str, dict[str, Any]],
    transfer_results: dict[str, pd.DataFrame],
    test_set: dict[str, np.ndarray],
    dataset_info: dict[str, Any],
    params: dict[str, Any],
    attention_shift_table: pd.DataFrame,
    robustness_vs_eps_table: pd.DataFrame,
    compute_cost_table: pd.DataFrame,
    sensitivity_results: dict[str, pd.DataFrame],
    mask_source_results: dict[str, pd.DataFrame],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str, plt.Figure, plt.Figure]:
    """Build the report over the methods of ``evaluated_metrics``.

    In ``train_eval`` the per-method inputs are the outputs of the run itself; in the
    stand-alone ``reporting`` pipeline, the latest result of every method on disk. The
    analysis tables come from the figure nodes; the sensitivity and mask-source tables
    from their own pipelines' latest runs, when there are any.
    """
    metrics = {m: v for m, v in evaluated_metrics.items() if "best" in v}
    histories = {m: h for m, h in training_histories.items() if m in metrics}
    logger.info("Report over %d evaluated method(s): %s", len(metrics), ", ".join(order_methods(list(metrics))))
    table = reporting.robustness_table(metrics)
    bias = reporting.bias_table(metrics)
    transfer = transfer_results.get("transfer")
    paired = paired_table({m: v for m, v in per_image.items() if m in metrics})
    markdown = reporting.markdown_report(metrics, table, bias, mask_quality.get("mask_model"), transfer, dataset_info,
                                         paired=paired, masks=mask_table(metrics))
    analyses = [
        *sections.attention_shift_lines(attention_shift_table),
        *sections.robustness_vs_eps_lines(robustness_vs_eps_table),
        *sections.compute_cost_lines(compute_cost_table),
        *sections.sensitivity_lines(sensitivity_results),
        *sections.mask_source_lines(mask_source_results),
    ]
    markdown = markdown.rstrip("\n") + "\n\n" + "\n".join(analyses) if analyses else markdown
    curves = reporting.learning_curves_figure(histories)
    examples = {m: v for m, v in attention_examples.items() if m in metrics and len(v.get("indices", ()))}
    # Every method's maps are of the same test images (the evaluation's fixed subset).
    indices = next((v["indices"] for v in examples.values()), np.zeros(0, dtype=np.int64))
    images = test_set["images"][indices]
    true_masks = test_set["masks"][indices] if "masks" in test_set and len(indices) else None
    maps = {m: v["maps"] for m, v in examples.items() if np.array_equal(v["indices"], indices)}
    figure = reporting.gradcam_figure(images, true_masks, maps, float(params.get("cam_threshold", 0.1)))
    return table, bias, paired, markdown, curves, figure
