"""``sensitivity``: DHAT trained once per value of each parameter of ``sensitivity.grid`` (paper figures 4, 5).

The grid in ``conf/base/parameters_sensitivity.yml`` (or the ``KEDRO_ENV`` environment)
makes the namespaces, ``sensitivity__<parameter>__<value>`` (``0.5`` is written ``0p5``):
one independent unit each (train with the value, score on the test split), then one node
per parameter draws ``data/08_reporting/sensitivity/sensitivity_<parameter>.png`` and
``.csv``. Every unit has the same seed, so the runs share batches and initial weights.
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from dhat.pipelines import data_ingestion, mask_precomputation
from dhat.pipelines.composition import configured_section
from dhat.pipelines.sensitivity.nodes import (
    draw_sensitivity,
    evaluate_grid_point,
    summarise_sensitivity,
    train_grid_point,
)
from dhat.pipelines.training.pipeline import SHARED_INPUTS as TRAINING_DATA
from dhat.pipelines.training.pipeline import SHARED_PARAMS as TRAINING_PARAMS
from dhat.pipelines.training.pipeline import TRAINING_INPUTS
from dhat.stats.sweeps import SensitivitySettings, value_token

_SHARED_DATA = TRAINING_DATA | {"test_set"}
_SHARED_PARAMS = TRAINING_PARAMS | {"params:sensitivity", "params:evaluation"}


def unit_namespace(parameter: str, value: float) -> str:
    return f"sensitivity__{parameter}__{value_token(value)}"


def _unit(method: str) -> Pipeline:
    """Train with the grid value (``grid_point``, from the catalog), then score."""
    return Pipeline([
        Node(train_grid_point, inputs={"grid_point": "grid_point", "sensitivity": "params:sensitivity", **TRAINING_INPUTS},
             outputs=["model_best", "model_last", "history"], name="train", tags=["training"]),
        Node(evaluate_grid_point,
             inputs=["grid_point", "params:sensitivity", "model_best", "test_set", "params:evaluation", "params:device"],
             outputs="metrics", name="evaluate", tags=["evaluation"]),
    ])


def create_pipeline(settings: SensitivitySettings | None = None, **kwargs) -> Pipeline:
    """Data, masks, one unit per grid value, one figure per parameter and the summary table."""
    settings = settings or SensitivitySettings.from_dict(configured_section("sensitivity"))
    method_section = f"params:{settings.namespace}.method"
    units = Pipeline([])
    metrics: dict[str, dict[str, str]] = {}
    for parameter, values in settings.grid.items():
        for value in values:
            namespace = unit_namespace(parameter, value)
            units += Pipeline(_unit(settings.namespace), namespace=namespace, inputs=_SHARED_DATA,
                              parameters={"params:method": method_section} | {p: p for p in _SHARED_PARAMS})
            metrics.setdefault(parameter, {})[f"v_{value_token(value)}"] = f"{namespace}.metrics"
    figures = Pipeline([
        Node(draw_sensitivity, inputs={"sensitivity": "params:sensitivity", "method": method_section, **runs},
             outputs=[f"sensitivity_{parameter}_table", f"sensitivity_{parameter}_figure"],
             name=f"draw_sensitivity_{parameter}", tags=["reporting"])
        for parameter, runs in metrics.items()
    ])
    every_run = {f"{p}__{key}": name for p, runs in metrics.items() for key, name in runs.items()}
    summary = Pipeline([Node(summarise_sensitivity, inputs={"method": method_section, **every_run},
                             outputs="sensitivity_summary",
                             name="summarise_sensitivity", tags=["reporting"])])
    return data_ingestion.create_pipeline() + mask_precomputation.create_pipeline() + units + figures + summary
