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
STUDY_SEEDS: tuple[int, ...] = (0, 1, 2)
#: Catalog groups the study trains.
STUDY_GROUPS: tuple[str, ...] = ("core", "oracle")

_SHARED_DATA = {"train_set", "val_set", "test_set", "test_variants", "attention_masks", "dataset_info"}


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


def create_pipeline(**kwargs) -> Pipeline:
    methods = namespaces(STUDY_GROUPS)
    shared_params = TRAINING_PARAMS | EVALUATION_PARAMS
    method_params = {f"params:{m}.method" for m in methods}
    units = Pipeline([])
    results: dict[str, str] = {}
    for seed in STUDY_SEEDS:
        replicate = f"study_seed{seed}"
        per_seed = per_method(_unit_template, methods, _SHARED_DATA | {"seed"}, shared_params)
        units += Pipeline(per_seed, namespace=replicate, inputs=_SHARED_DATA, parameters=shared_params | method_params)
        for method in methods:
            for kind in ("metrics", "per_image"):
                results[f"seed{seed}__{method}__{kind}"] = f"{replicate}.{method}.{kind}"
    aggregate = Node(aggregate_study, inputs=results, outputs=["study_table", "study_paired_table", "study_report"],
                     name="aggregate_study", tags=["reporting"])
    return data_ingestion.create_pipeline() + mask_precomputation.create_pipeline() + units + Pipeline([aggregate])
