"""``analysis``: the paper's analyses of each method (one namespace per method, one template),
then one node per figure and the compute-cost table over every analysed method.

Per method: ``analyse_attention_shift`` (paper figures 1b and 7) and
``analyse_robustness_vs_eps`` (figures 3 and 8) read the method's ``model_best``. In
``train_eval`` the latter also reads the run's evaluation record of the same checkpoint
(``per_image``), whose outcomes at the evaluation's radius it uses instead of crafting the
same attacks again; the stand-alone ``analysis`` pipeline crafts everything.
The figure nodes of the ``analysis`` pipeline read every method's latest result from
disk, so they also draw methods analysed by earlier runs; in ``train_eval`` they read
the results of the run itself. The compute-cost table (table 3) comes from the
training histories.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from kedro.pipeline import Node, Pipeline

from dhat.pipelines.analysis.nodes import (
    analyse_attention_shift,
    analyse_robustness_vs_eps,
    draw_attention_shift,
    draw_robustness_vs_eps,
    tabulate_compute_cost,
)
from dhat.pipelines.composition import per_method

SHARED_INPUTS = {"test_set"}
SHARED_PARAMS = {"params:analysis", "params:device"}
#: What the radius sweep reads besides the checkpoint when it follows the evaluation of the same run.
AFTER_EVALUATION = ["per_image", "params:evaluation"]
#: Outputs of the figure nodes that the report reads.
FIGURE_TABLES = ["attention_shift_table", "robustness_vs_eps_table", "compute_cost_table"]


def analysis_template(after_evaluation: bool = False) -> Pipeline:
    """The per-method analyses: read ``model_best`` (and with ``after_evaluation`` the evaluation's
    ``per_image`` record of this run), write ``attention_shift`` and ``robustness_vs_eps``."""
    inputs = ["model_best", "test_set", "params:analysis", "params:device"]
    return Pipeline([
        Node(analyse_attention_shift, inputs=inputs, outputs="attention_shift", name="analyse_attention_shift",
             tags=["analysis"]),
        Node(analyse_robustness_vs_eps, inputs=[*inputs, *(AFTER_EVALUATION if after_evaluation else [])],
             outputs="robustness_vs_eps",
             name="analyse_robustness_vs_eps", tags=["analysis"]),
    ])


def create_pipeline(methods: Iterable[str] | None = None, after_evaluation: bool = False, **kwargs) -> Pipeline:
    """The template under each namespace in ``methods`` (default: every method of the catalog);
    ``after_evaluation``: the run evaluates the same checkpoints (``train_eval``)."""
    parameters = SHARED_PARAMS | ({"params:evaluation"} if after_evaluation else set())
    return per_method(functools.partial(analysis_template, after_evaluation), methods, SHARED_INPUTS, parameters)


def create_figures_pipeline() -> Pipeline:
    """One node per figure (and the cost table), over the methods in ``attention_shift_results``,
    ``robustness_vs_eps_results`` and ``training_histories`` (every method with results on disk)."""
    return Pipeline([
        Node(draw_attention_shift, inputs=["attention_shift_results", "params:analysis"],
             outputs=["attention_shift_table", "attention_shift_figure"], name="draw_attention_shift",
             tags=["reporting"]),
        Node(draw_robustness_vs_eps, inputs="robustness_vs_eps_results",
             outputs=["robustness_vs_eps_table", "robustness_vs_eps_figure"], name="draw_robustness_vs_eps",
             tags=["reporting"]),
        Node(tabulate_compute_cost, inputs=["training_histories", "evaluated_metrics"], outputs="compute_cost_table",
             name="tabulate_compute_cost", tags=["reporting"]),
    ])
