"""``analysis``: the paper's analyses of each method (one namespace per method, one template),
then one node per figure and the compute-cost table over every analysed method.

Per method: ``analyse_attention_shift`` (paper figures 1b and 7) and
``analyse_robustness_vs_eps`` (figures 3 and 8) read the method's ``model_best``.
The figure nodes read every method's latest result from disk, so they also draw
methods analysed by earlier runs; the compute-cost table (table 3) comes from the
training histories.
"""

from __future__ import annotations

from collections.abc import Iterable

from kedro.pipeline import Node, Pipeline

from dhat.pipelines.analysis.nodes import (
    analyse_attention_shift,
    analyse_robustness_vs_eps,
    draw_attention_shift,
    draw_robustness_vs_eps,
    tabulate_compute_cost,
)
from dhat.pipelines.composition import node_after, per_method

SHARED_INPUTS = {"test_set"}
SHARED_PARAMS = {"params:analysis", "params:device"}
#: Outputs of the figure nodes that the report reads.
FIGURE_TABLES = ["attention_shift_table", "robustness_vs_eps_table", "compute_cost_table"]


def analysis_template() -> Pipeline:
    """The per-method analyses: read ``model_best``, write ``attention_shift`` and ``robustness_vs_eps``."""
    inputs = ["model_best", "test_set", "params:analysis", "params:device"]
    return Pipeline([
        Node(analyse_attention_shift, inputs=inputs, outputs="attention_shift", name="analyse_attention_shift",
             tags=["analysis"]),
        Node(analyse_robustness_vs_eps, inputs=inputs, outputs="robustness_vs_eps",
             name="analyse_robustness_vs_eps", tags=["analysis"]),
    ])


def create_pipeline(methods: Iterable[str] | None = None, **kwargs) -> Pipeline:
    """The template under each namespace in ``methods`` (default: every method of the catalog)."""
    return per_method(analysis_template, methods, SHARED_INPUTS, SHARED_PARAMS)


def create_figures_pipeline(after: list[str] | None = None) -> Pipeline:
    """One node per figure (and the cost table), over every method with results on disk.

    ``after``: datasets of this run they must wait for (not read).
    """
    return (
        node_after(draw_attention_shift, ["attention_shift_results", "params:analysis"],
                   ["attention_shift_table", "attention_shift_figure"], "draw_attention_shift", after, ["reporting"])
        + node_after(draw_robustness_vs_eps, ["robustness_vs_eps_results"],
                     ["robustness_vs_eps_table", "robustness_vs_eps_figure"], "draw_robustness_vs_eps", after,
                     ["reporting"])
        + node_after(tabulate_compute_cost, ["training_histories", "evaluated_metrics"], "compute_cost_table",
                     "tabulate_compute_cost", after, ["reporting"])
    )
