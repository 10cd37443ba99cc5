"""``reporting``: table 1, bias metrics, the analysis figures, learning curves and Grad-CAM figure of every evaluated method."""

from kedro.pipeline import Pipeline

from dhat.pipelines.analysis.pipeline import FIGURE_TABLES, create_figures_pipeline
from dhat.pipelines.composition import node_after
from dhat.pipelines.reporting.nodes import build_report


def create_pipeline(after: list[str] | None = None, **kwargs) -> Pipeline:
    """The analysis figures, then the report. ``after``: datasets of this run they wait for (not read)."""
    return create_figures_pipeline(after) + node_after(
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
        after=after,
        tags=["reporting"],
    )
