"""``mask_sources``: DHAT trained with each attention source of ``mask_sources.sources`` (paper table 8).

One namespace per source, ``mask_source__<source>``, made from the list in
``conf/base/parameters_mask_sources.yml`` (or the ``KEDRO_ENV`` environment): the source's
maps of the training images on the natural reference model (timed), DHAT trained on
them, a light evaluation; then ``data/08_reporting/mask_sources/mask_sources.csv``.
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from dhat.pipelines import data_ingestion, mask_precomputation
from dhat.pipelines.composition import configured_section
from dhat.pipelines.mask_sources.nodes import (
    compute_source_maps,
    evaluate_source,
    tabulate_mask_sources,
    train_with_source,
)
from dhat.pipelines.training.pipeline import SHARED_PARAMS as TRAINING_PARAMS
from dhat.pipelines.training.pipeline import TRAINING_INPUTS
from dhat.stats.sweeps import MaskSourceSettings

_SHARED_DATA = {"train_set", "val_set", "test_set", "dataset_info", "mask_model"}
_SHARED_PARAMS = TRAINING_PARAMS | {"params:mask_sources", "params:mask_model", "params:evaluation"}


def _unit() -> Pipeline:
    """Maps from the source (``source``, from the catalog), train on them, score."""
    return Pipeline([
        Node(compute_source_maps, inputs=["source", "mask_model", "train_set", "params:mask_sources",
                                          "params:mask_model", "params:device"],
             outputs=["attention_masks", "map_summary"], name="compute_maps", tags=["mask_precomputation"]),
        Node(train_with_source, inputs={"source": "source", "mask_sources": "params:mask_sources", **TRAINING_INPUTS},
             outputs=["model_best", "model_last", "history"], name="train", tags=["training"]),
        Node(evaluate_source,
             inputs=["source", "params:mask_sources", "map_summary", "model_best", "test_set", "params:evaluation",
                     "params:device"],
             outputs="metrics", name="evaluate", tags=["evaluation"]),
    ])


def create_pipeline(settings: MaskSourceSettings | None = None, **kwargs) -> Pipeline:
    """Data, the mask model, one unit per source and the comparison table."""
    settings = settings or MaskSourceSettings.from_dict(configured_section("mask_sources"))
    method_section = f"params:{settings.namespace}.method"
    units = Pipeline([])
    for source in settings.sources:
        units += Pipeline(_unit(), namespace=f"mask_source__{source}", inputs=_SHARED_DATA,
                          parameters={"params:method": method_section} | {p: p for p in _SHARED_PARAMS})
    table = Pipeline([Node(tabulate_mask_sources,
                           inputs={s: f"mask_source__{s}.metrics" for s in settings.sources},
                           outputs="mask_sources_table", name="tabulate_mask_sources", tags=["reporting"])])
    return data_ingestion.create_pipeline() + mask_precomputation.create_pipeline() + units + table
