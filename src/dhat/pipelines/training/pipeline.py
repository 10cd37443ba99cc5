"""``training``: one namespace per method of the catalog, all built from one template."""

from __future__ import annotations

from collections.abc import Iterable

from kedro.pipeline import Node, Pipeline

from dhat.pipelines.composition import per_method
from dhat.pipelines.training.nodes import train_method

#: Datasets and parameters every method namespace shares (not prefixed by the namespace).
SHARED_INPUTS = {"train_set", "val_set", "attention_masks", "dataset_info"}
SHARED_PARAMS = {"params:model", "params:training", "params:device"}
#: Inputs of the training node: :func:`train_method`'s argument -> the dataset or parameter it reads.
TRAINING_INPUTS = {"train_set": "train_set", "val_set": "val_set", "attention_masks": "attention_masks",
                   "dataset_info": "dataset_info", "method": "params:method", "model": "params:model",
                   "training": "params:training", "device": "params:device", "training_state": "training_state"}


def training_template() -> Pipeline:
    """The training node of one method: reads ``params:method``, writes ``model_best``, ``model_last``, ``history``."""
    return Pipeline(
        [
            Node(
                train_method,
                inputs=TRAINING_INPUTS,
                outputs=["model_best", "model_last", "history"],
                name="train",
                tags=["training"],
            )
        ]
    )


def create_pipeline(methods: Iterable[str] | None = None, **kwargs) -> Pipeline:
    """The template under each namespace in ``methods`` (default: every method of the catalog)."""
    return per_method(training_template, methods, SHARED_INPUTS, SHARED_PARAMS)
