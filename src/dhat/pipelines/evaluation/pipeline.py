"""``evaluation``: one namespace per method of the catalog, all built from one template."""

from __future__ import annotations

from collections.abc import Iterable

from kedro.pipeline import Node, Pipeline

from dhat.pipelines.composition import per_method
from dhat.pipelines.evaluation.nodes import evaluate_method

#: Datasets and parameters every method namespace shares (not prefixed by the namespace).
SHARED_INPUTS = {"train_set", "test_set", "test_variants", "dataset_info"}
SHARED_PARAMS = {"params:evaluation", "params:device"}


def evaluation_template() -> Pipeline:
    """The evaluation node of one method: reads its ``model_best`` / ``model_last``, writes ``metrics``."""
    return Pipeline(
        [
            Node(
                evaluate_method,
                inputs=["model_best", "model_last", "train_set", "test_set", "test_variants", "dataset_info",
                        "params:evaluation", "params:device"],
                outputs=["metrics", "attention_examples", "per_image"],
                name="evaluate",
                tags=["evaluation"],
            )
        ]
    )


def create_pipeline(methods: Iterable[str] | None = None, **kwargs) -> Pipeline:
    """The template under each namespace in ``methods`` (default: every method of the catalog)."""
    return per_method(evaluation_template, methods, SHARED_INPUTS, SHARED_PARAMS)
