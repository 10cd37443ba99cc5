"""``evaluate_external``: models the user brings (``external_models`` in conf/), scored like a trained method.

One namespace per entry of ``external_models`` (read when the pipelines are built, from
conf/base and ``KEDRO_ENV``): load the model (``<name>.model_best``), then the evaluation
protocol on the configured data and subset, writing ``<name>.metrics``, ``<name>.per_image``
and ``<name>.attention_examples`` where a trained method's go; ``kedro run --pipelines=reporting``
then shows it beside the project's methods, paired on the same images.
"""

from __future__ import annotations

from collections.abc import Iterable

from kedro.pipeline import Node, Pipeline

from dhat.external import external_settings
from dhat.pipelines import data_ingestion
from dhat.pipelines.composition import configured_section
from dhat.pipelines.evaluate_external.nodes import evaluate_external, load_external

_SHARED = {"train_set", "test_set", "test_variants", "dataset_info"}
_PARAMS = {"params:evaluation", "params:device"}


def _unit() -> Pipeline:
    return Pipeline([
        Node(load_external, inputs=["external_name", "params:entry", "dataset_info"], outputs="model_best",
             name="load", tags=["evaluation"]),
        Node(evaluate_external, inputs=["model_best", "train_set", "test_set", "test_variants", "dataset_info",
                                        "params:evaluation", "params:device"],
             outputs=["metrics", "attention_examples", "per_image"], name="evaluate", tags=["evaluation"]),
    ])


def create_pipeline(names: Iterable[str] | None = None, **kwargs) -> Pipeline:
    """Data ingestion and one unit per outside model (default: the entries of ``external_models``)."""
    chosen = tuple(external_settings(configured_section("external_models")) if names is None else names)
    units = sum((Pipeline(_unit(), namespace=name, inputs=_SHARED,
                          parameters={p: p for p in _PARAMS} | {"params:entry": f"params:external_models.{name}"})
                 for name in chosen), Pipeline([]))
    return data_ingestion.create_pipeline() + units
