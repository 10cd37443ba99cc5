"""``reporting``: table 1, bias metrics, learning curves and Grad-CAM figure of every evaluated method."""

import warnings

from kedro.pipeline import Node, Pipeline

from dhat.pipelines.reporting.nodes import build_report


def create_pipeline(after: list[str] | None = None, **kwargs) -> Pipeline:
    """``after``: datasets this run produces that the report must wait for (not read)."""
    with warnings.catch_warnings():
        # ``after`` names namespaced outputs ("dhat.metrics") on purpose, to order this node after them.
        warnings.filterwarnings("ignore", message="One or more dataset names contain")
        return _pipeline(after)


def _pipeline(after: list[str] | None) -> Pipeline:
    return Pipeline(
        [
            Node(
                build_report,
                inputs=[
                    "evaluated_metrics",
                    "training_histories",
                    "mask_quality_results",
                    "transfer_results",
                    "test_set",
                    "dataset_info",
                    "params:reporting",
                    *(after or []),
                ],
                outputs=["results_table", "bias_table", "report", "learning_curves", "gradcam_figure"],
                name="build_report",
            )
        ]
    )
