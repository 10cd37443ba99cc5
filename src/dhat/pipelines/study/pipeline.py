"""``study``: the core comparison (and DHAT's oracle) trained with several seeds, aggregated with intervals.

Each (seed, method) is an independent namespace ``study_seed<k>.<method>`` (an
orchestrator may run them in parallel: ``--namespaces=study_seed1``); the seed comes
from the namespace through the catalog (``study_seed{seed}.seed``). The seeds and methods
are ``study.seeds`` and ``study.methods`` of ``conf/base/parameters_study.yml`` (or of the
``KEDRO_ENV`` environment), read when the pipelines are built. Data, masks and
the evaluation protocol are shared, so every run is scored on the same test images
and methods can be compared paired, per seed.
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from dhat.methods.catalog import namespaces
from dhat.pipelines import data_ingestion, mask_precomputation
from dhat.pipelines.composition import configured_section, per_method
from dhat.pipelines.evaluation.pipeline import SHARED_PARAMS as EVALUATION_PARAMS
from dhat.pipelines.evaluation.pipeline import evaluation_template
from dhat.pipelines.study.nodes import aggregate_study, train_method_with_seed
from dhat.pipelines.training.pipeline import SHARED_PARAMS as TRAINING_PARAMS
from dhat.pipelines.training.pipeline import TRAINING_INPUTS
from dhat.study import StudySettings

#: Catalog groups the study trains when ``study.methods`` is null.
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


def study_settings() -> StudySettings:
    """The configured seeds and methods (``conf/base`` + ``KEDRO_ENV``), the defaults without a project."""
    return StudySettings.from_dict(configured_section("study"))


def study_methods(settings: StudySettings) -> tuple[str, ...]:
    """The study's methods: ``study.methods``, or the catalog groups :data:`STUDY_GROUPS` when it is null."""
    return settings.methods if settings.methods is not None else namespaces(STUDY_GROUPS)


def _results(methods: tuple[str, ...], seeds: tuple[int, ...]) -> dict[str, str]:
    """Aggregation inputs: ``seed<k>__<method>__<kind>`` -> the unit's dataset name."""
    return {f"seed{seed}__{method}__{kind}": f"study_seed{seed}.{method}.{kind}"
            for seed in seeds for method in methods for kind in _KINDS}


def _units(methods: tuple[str, ...], seeds: tuple[int, ...]) -> Pipeline:
    """One namespace ``study_seed<k>.<method>`` per seed and method."""
    shared_params = TRAINING_PARAMS | EVALUATION_PARAMS
    method_params = {f"params:{m}.method" for m in methods}
    units = Pipeline([])
    for seed in seeds:
        per_seed = per_method(_unit_template, methods, _SHARED_DATA | {"seed"}, shared_params)
        units += Pipeline(per_seed, namespace=f"study_seed{seed}", inputs=_SHARED_DATA,
                          parameters=shared_params | method_params)
    return units


def _aggregate(results: dict[str, str], prefix: str, name: str) -> Node:
    return Node(aggregate_study, inputs=results,
                outputs=[f"{prefix}_table", f"{prefix}_paired_table", f"{prefix}_report"], name=name,
                tags=["reporting"])


def create_pipeline(settings: StudySettings | None = None, **kwargs) -> Pipeline:
    """Data, masks, every (seed, method) unit (default: the core comparison and the oracle), the aggregation."""
    settings = settings or study_settings()
    methods = study_methods(settings)
    return (data_ingestion.create_pipeline() + mask_precomputation.create_pipeline() + _units(methods, settings.seeds)
            + Pipeline([_aggregate(_results(methods, settings.seeds), "study", "aggregate_study")]))


def create_ablation_pipeline(settings: StudySettings | None = None, **kwargs) -> Pipeline:
    """:data:`STUDY_ABLATIONS` on the study's seeds, aggregated with the study's DHAT units (run ``study`` first)."""
    seeds = (settings or study_settings()).seeds
    results = _results(STUDY_ABLATIONS, seeds) | _results(("dhat",), seeds)
    return (_units(STUDY_ABLATIONS, seeds)
            + Pipeline([_aggregate(results, "study_ablations", "aggregate_study_ablations")]))
