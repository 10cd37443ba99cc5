"""``study``: the core comparison (and DHAT's oracle) trained with several seeds, aggregated with intervals.

Each (seed, method) is an independent namespace ``study_seed<k>.<method>`` (an
orchestrator may run them in parallel: ``--namespaces=study_seed1``); the seed comes
from the namespace through the catalog (``study_seed{seed}.seed``). Data, masks and
the evaluation protocol are shared, so every run is scored on the same test images
and methods can be compared paired, per seed.
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from dhat.methods.catalog import namespaces
from dhat.pipelines import data_ingestion, mask_precomputation
from dhat.pipelines.composition import per_method
from dhat.pipelines.evaluation.pipeline import SHARED_PARAMS as EVALUATION_PARAMS
from dhat.pipelines.evaluation.pipeline import evaluation_template
from dhat.pipelines.study.nodes import aggregate_study, train_method_with_seed
from dhat.pipelines.training.pipeline import SHARED_PARAMS as TRAINING_PARAMS
from dhat.pipelines.training.pipeline import TRAINING_INPUTS

#: Training seeds of the study (one namespace each); the catalog gives each its value.
STUDY_SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
#: Catalog groups the study trains.
STUDY_GROUPS: tuple[str, ...] = ("core", "oracle")
#: Configurations ``study_ablations`` compares with the study's DHAT on the same seeds: the paper's
#: absolute mask threshold instead of the quantile rule, and the reference code's FLOE form.
STUDY_ABLATIONS: tuple[str, ...] = ("dhat_absolute_mask", "dhat_floe_reference")

_SHARED_DATA = {"train_set", "val_set", "test_set", "test_variants", "attention_masks", "dataset_info"}
_KINDS = ("metrics", "per_image")


def _unit_template() -> Pipeline:
    """Train with the replicate's seed, then the evaluation template."""
    train = Node(
        train_method_with_seed,
        inputs=["seed", *TRAINING_INPUTS],
        outputs=["model_best", "model_last", "history"],
        name="train",
        tags=["training"],
    )
    return Pipeline([train]) + evaluation_template()


def _results(methods: tuple[str, ...]) -> dict[str, str]:
    """Aggregation inputs: ``seed<k>__<method>__<kind>`` -> the unit's dataset name."""
    return {f"seed{seed}__{method}__{kind}": f"study_seed{seed}.{method}.{kind}"
            for seed in STUDY_SEEDS for method in methods for kind in _KINDS}


def _units(methods: tuple[str, ...]) -> Pipeline:
    """One namespace ``study_seed<k>.<method>`` per seed and method."""
    shared_params = TRAINING_PARAMS | EVALUATION_PARAMS
    method_params = {f"params:{m}.method" for m in methods}
    units = Pipeline([])
    for seed in STUDY_SEEDS:
        per_seed = per_method(_unit_template, methods, _SHARED_DATA | {"seed"}, shared_params)
        units += Pipeline(per_seed, namespace=f"study_seed{seed}", inputs=_SHARED_DATA,
                          parameters=shared_params | method_params)
    return units


def _aggregate(results: dict[str, str], prefix: str, name: str) -> Node:
    return Node(aggregate_study, inputs=results,
                outputs=[f"{prefix}_table", f"{prefix}_paired_table", f"{prefix}_report"], name=name,
                tags=["reporting"])


def create_pipeline(**kwargs) -> Pipeline:
    """Data, masks, every (seed, method) unit of the core comparison and the oracle, the aggregation."""
    methods = namespaces(STUDY_GROUPS)
    return (data_ingestion.create_pipeline() + mask_precomputation.create_pipeline() + _units(methods)
            + Pipeline([_aggregate(_results(methods), "study", "aggregate_study")]))


def create_ablation_pipeline(**kwargs) -> Pipeline:
    """:data:`STUDY_ABLATIONS` on the study's seeds, aggregated with the study's DHAT units (run ``study`` first)."""
    results = _results(STUDY_ABLATIONS) | _results(("dhat",))
    return _units(STUDY_ABLATIONS) + Pipeline([_aggregate(results, "study_ablations", "aggregate_study_ablations")])
