"""``reporting``: table 1, bias metrics, the analysis figures, learning curves and Grad-CAM figure.

The stand-alone pipeline (``kedro run --pipelines=reporting``) reports every method with
results on disk (the ``LatestResultsDataset`` entries of the catalog). ``train_eval``
uses :func:`create_run_pipeline`: transfer, figures and report fed by the outputs of its
own namespaces, so they are real node inputs that kedro-viz draws.
"""

from collections.abc import Iterable

from kedro.pipeline import Node, Pipeline

from dhat.pipelines import transfer
from dhat.pipelines.analysis.pipeline import FIGURE_TABLES, create_figures_pipeline
from dhat.pipelines.composition import gather_node
from dhat.pipelines.reporting.nodes import build_report

#: The per-method disk scans of the stand-alone pipelines -> the unit output that replaces
#: each one in a run that produces them itself.
RUN_OUTPUTS: dict[str, str] = {
    "evaluated_metrics": "metrics",
    "training_histories": "history",
    "per_image_results": "per_image",
    "attention_example_results": "attention_examples",
    "trained_models": "model_best",
    "attention_shift_results": "attention_shift",
    "robustness_vs_eps_results": "robustness_vs_eps",
}
#: Shared (not per-method) results the report reads: disk scan -> ``{key: dataset of the run}``.
RUN_SHARED: dict[str, dict[str, str]] = {
    "mask_quality_results": {"mask_model": "mask_quality"},
    "transfer_results": {"transfer": "transfer_table"},
}


def create_pipeline(**kwargs) -> Pipeline:
    """The analysis figures, then the report, over every method with results on disk."""
    report = Node(
        build_report,
        inputs=[
            "evaluated_metrics",
            "attention_example_results",
            "per_image_results",
            "training_histories",
            "mask_quality_results",
            "transfer_results",
            "test_set",
            "dataset_info",
            "params:reporting",
            *FIGURE_TABLES,
            "sensitivity_results",
            "mask_source_results",
        ],
        outputs=["results_table", "bias_table", "paired_table", "report", "learning_curves", "gradcam_figure"],
        name="build_report",
        tags=["reporting"],
    )
    return create_figures_pipeline() + Pipeline([report])


def create_run_pipeline(methods: Iterable[str]) -> Pipeline:
    """Transfer, figures and report over ``methods``, reading their outputs of this run.

    One :func:`~dhat.pipelines.composition.gather` node per kind of output collects the
    namespaced datasets (``dhat.metrics``, ``pgd_at.metrics``, ...) into the mapping the
    stand-alone nodes read from disk (``run_evaluated_metrics`` for ``evaluated_metrics``).
    The sensitivity and mask-source tables still come from those pipelines' latest runs.
    """
    methods = tuple(methods)
    tag = {"trained_models": ["transfer"]}
    gathered = Pipeline([
        gather_node({m: f"{m}.{kind}" for m in methods}, f"run_{scan}", f"gather_{scan}", tag.get(scan, ["reporting"]))
        for scan, kind in RUN_OUTPUTS.items()
    ] + [gather_node(sources, f"run_{scan}", f"gather_{scan}", ["reporting"]) for scan, sources in RUN_SHARED.items()])
    consumers = transfer.create_pipeline() + create_pipeline()
    renamed = {scan: f"run_{scan}" for scan in [*RUN_OUTPUTS, *RUN_SHARED]}
    return gathered + Pipeline(consumers, inputs=renamed)
