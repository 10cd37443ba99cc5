"""``tune``: every method of ``tune.methods`` tuned with the same completed budget, per protocol (Optuna).

One namespace per protocol and method, ``tune_<protocol>.<method>``: search (until
``tune.n_trials`` trials completed), choose (re-score the best with more seeds) and check
(AutoAttack and the gradient-masking checks of the winner on validation data). Then, per
protocol (namespace ``tune_<protocol>``), the table of chosen values and two figures. The
units read the training and validation data only; ``tune_test`` trains the winners on
fresh seeds and scores them on the test split. ``tune.methods`` and ``tune.protocols`` are
read when the pipelines are built (conf/base + ``KEDRO_ENV``), like the study's lists.
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from dhat.pipelines import data_ingestion, mask_precomputation
from dhat.pipelines.composition import configured_section
from dhat.pipelines.tune.nodes import (
    check_chosen,
    choose_configuration,
    draw_tuning_progress,
    draw_tuning_tradeoff,
    tabulate_tuning,
    tune_method,
)
from dhat.tuning import TuneSettings

#: Datasets every unit shares; ``tune_storage`` is the SQLite file (used when tune.storage.url is null).
SHARED_DATA = {"train_set", "val_set", "val_variants", "attention_masks", "dataset_info", "tune_storage"}
SHARED_PARAMS = {"params:tune", "params:model", "params:training", "params:device", "params:evaluation"}

_DATA = {"train_set": "train_set", "val_set": "val_set", "val_variants": "val_variants",
         "attention_masks": "attention_masks", "dataset_info": "dataset_info", "model": "params:model",
         "training": "params:training", "device": "params:device", "tune_storage": "tune_storage"}


def unit_template() -> Pipeline:
    """Search, choose and check one method under one protocol (reads ``params:method``, ``unit``)."""
    own = {"unit": "unit", "tune": "params:tune", "method": "params:method"}
    return Pipeline([
        Node(tune_method, inputs=own | _DATA, outputs="trials", name="search", tags=["training"]),
        Node(choose_configuration, inputs=own | {"trials": "trials"} | _DATA, outputs="chosen", name="choose",
             tags=["training"]),
        Node(check_chosen, inputs=own | {"chosen": "chosen", "evaluation": "params:evaluation"} | _DATA,
             outputs=["chosen_model", "check"], name="check", tags=["evaluation"]),
    ])


def protocol_pipeline(protocol: str, methods: tuple[str, ...]) -> Pipeline:
    """The units of one protocol and its table and figures, in the namespace ``tune_<protocol>``."""
    units = Pipeline([])
    for method in methods:
        units += Pipeline(unit_template(), namespace=method, inputs=SHARED_DATA,
                          parameters={p: p for p in SHARED_PARAMS} | {"params:method": f"params:{method}.method"})
    checks = {method: f"{method}.check" for method in methods}
    summary = Pipeline([
        Node(tabulate_tuning, inputs={"protocol": "protocol", "tune": "params:tune", **checks},
             outputs=["table", "report"], name="tabulate_tuning", tags=["reporting"]),
        Node(draw_tuning_progress, inputs={"protocol": "protocol", **checks}, outputs="progress_figure",
             name="draw_tuning_progress", tags=["reporting"]),
        Node(draw_tuning_tradeoff, inputs={"protocol": "protocol", **checks}, outputs="tradeoff_figure",
             name="draw_tuning_tradeoff", tags=["reporting"]),
    ])
    method_params = {f"params:{m}.method" for m in methods}
    return Pipeline(units + summary, namespace=f"tune_{protocol}", inputs=SHARED_DATA,
                    parameters=SHARED_PARAMS | method_params)


def create_pipeline(settings: TuneSettings | None = None, **kwargs) -> Pipeline:
    """Data, masks, and per protocol of ``settings`` its units and summary."""
    settings = settings or TuneSettings.from_dict(configured_section("tune"))
    protocols = sum((protocol_pipeline(p, settings.methods) for p in settings.protocols), Pipeline([]))
    return data_ingestion.create_pipeline() + mask_precomputation.create_pipeline() + protocols
