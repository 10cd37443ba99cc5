"""``reporting``: table 1, bias metrics, learning curves and Grad-CAM figure of every evaluated method."""

from kedro.pipeline import Pipeline

from dhat.pipelines.composition import node_after
from dhat.pipelines.reporting.nodes import build_report


def create_pipeline(after: list[str] | None = None, **kwargs) -> Pipeline:
    """``after``: datasets this run produces that the report must wait for (not read)."""
    return node_after(
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
        ],
        outputs=["results_table", "bias_table", "paired_table", "report", "learning_curves", "gradcam_figure"],
        name="build_report",
        after=after,
        tags=["reporting"],
    )
