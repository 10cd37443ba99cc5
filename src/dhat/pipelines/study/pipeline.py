"""``study``: the core comparison (and DHAT's oracle) trained with several seeds, aggregated with intervals.

Each (seed, method) is an independent namespace ``study_seed<k>.<method>`` (an
orchestrator may run them in parallel: ``--namespaces=study_seed1``); the seed comes
from the namespace through the catalog (``study_seed{seed}.seed``). The seeds and methods
are ``study.seeds`` and ``study.methods`` of ``conf/base/parameters_study.yml`` (or of the
run's environment), read when the pipelines are built. Data and the evaluation protocol
are shared, so every run is scored on the same test images and methods can be compared
paired, per seed. The mask model is shared too, or, with ``study.mask_model_per_seed``,
trained once per seed in the namespace ``study_seed<k>`` with that seed, so that DHAT's
intervals over seeds include the mask model's randomness.
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from dhat.methods.catalog import namespaces
from dhat.pipelines import data_ingestion, mask_precomputation
from dhat.pipelines.composition import configured_section, per_method
from dhat.pipelines.evaluation.pipeline import SHARED_PARAMS as EVALUATION_PARAMS
from dhat.pipelines.evaluation.pipeline import evaluation_template
from dhat.pipelines.mask_precomputation.nodes import compute_attention_masks
from dhat.pipelines.study.nodes import (
    aggregate_study,
    draw_study_curves,
    draw_study_masks,
    tabulate_study_masks,
    train_mask_model_with_seed,
    train_method_with_seed,
)
from dhat.pipelines.training.pipeline import SHARED_PARAMS as TRAINING_PARAMS
from dhat.pipelines.training.pipeline import TRAINING_INPUTS
from dhat.stats.study import StudySettings, unit_key

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
        inputs={"seed": "seed", **TRAINING_INPUTS},
        outputs=["model_best", "model_last", "history"],
        name="train",
        tags=["training"],
    )
    return Pipeline([train]) + evaluation_template()


def _mask_template() -> Pipeline:
    """One seed's mask model (trained with the replicate's seed) and its Grad-CAM maps of the training images."""
    return Pipeline([
        Node(train_mask_model_with_seed,
             inputs=["seed", "train_set", "val_set", "dataset_info", "params:mask_model", "params:device",
                     "mask_model_training_state"],
             outputs=["mask_model", "mask_model_history"], name="train_mask_model", tags=["mask_precomputation"]),
        Node(compute_attention_masks, inputs=["mask_model", "train_set", "params:mask_model", "params:device"],
             outputs=["attention_masks", "mask_quality"], name="compute_attention_masks", tags=["mask_precomputation"]),
    ])


def study_settings() -> StudySettings:
    """The configured seeds and methods (``conf/base`` + the run's environment), the defaults without a project."""
    return StudySettings.from_dict(configured_section("study"))


def study_methods(settings: StudySettings) -> tuple[str, ...]:
    """The study's methods: ``study.methods``, or the catalog groups :data:`STUDY_GROUPS` when it is null."""
    return settings.methods if settings.methods is not None else namespaces(STUDY_GROUPS)


def _results(methods: tuple[str, ...], seeds: tuple[int, ...]) -> dict[str, str]:
    """Aggregation inputs: ``seed<k>__<method>__<kind>`` -> the unit's dataset name."""
    return {unit_key(seed, method, kind): f"study_seed{seed}.{method}.{kind}"
            for seed in seeds for method in methods for kind in _KINDS}


def _units(methods: tuple[str, ...], seeds: tuple[int, ...], masks_per_seed: bool = False,
           train_masks: bool = True) -> Pipeline:
    """One namespace ``study_seed<k>.<method>`` per seed and method; with ``masks_per_seed`` they read
    ``study_seed<k>.attention_masks``, which ``train_masks`` adds the nodes of."""
    shared_params = TRAINING_PARAMS | EVALUATION_PARAMS
    method_params = {f"params:{m}.method" for m in methods}
    shared = _SHARED_DATA - {"attention_masks"} if masks_per_seed else _SHARED_DATA
    units = Pipeline([])
    for seed in seeds:
        per_seed = per_method(_unit_template, methods, _SHARED_DATA | {"seed"}, shared_params)
        if masks_per_seed and train_masks:
            per_seed += _mask_template()
        mask_params = {"params:mask_model"} if masks_per_seed and train_masks else set()
        units += Pipeline(per_seed, namespace=f"study_seed{seed}", inputs=shared,
                          parameters=shared_params | method_params | mask_params)
    return units


def _aggregate(results: dict[str, str], prefix: str, name: str) -> Node:
    return Node(aggregate_study, inputs={"study": "params:study", **results},
                outputs=[f"{prefix}_table", f"{prefix}_paired_table", f"{prefix}_report"], name=name,
                tags=["reporting"])


def _mask_reports(methods: tuple[str, ...], seeds: tuple[int, ...], masks_per_seed: bool) -> Pipeline:
    """The masks of every seed (mask model accuracy, background shares, each DHAT's coverage) and a figure."""
    def own(seed: int | str, name: str) -> str:
        return f"study_seed{seed}.{name}" if masks_per_seed else name

    mask_seeds: list[int | str] = list(seeds) if masks_per_seed else ["shared"]
    inputs = {unit_key(replicate, kind): own(replicate, name) if masks_per_seed else name
              for replicate in mask_seeds for kind, name in (("quality", "mask_quality"), ("history", "mask_model_history"))}
    inputs |= {unit_key(s, m, "metrics"): f"study_seed{s}.{m}.metrics" for s in seeds for m in methods}
    first = seeds[0]
    return Pipeline([
        Node(tabulate_study_masks, inputs=inputs, outputs="study_masks_table", name="tabulate_study_masks",
             tags=["reporting"]),
        Node(draw_study_masks, inputs={"train_set": "train_set", "attention_masks": own(first, "attention_masks"),
                                       "dataset_info": "dataset_info",
                                       **{m: f"params:{m}.method" for m in methods}},
             outputs="study_masks_figure", name="draw_study_masks", tags=["reporting"]),
    ])


def create_pipeline(settings: StudySettings | None = None, **kwargs) -> Pipeline:
    """Data, masks (shared, or one mask model per seed), every (seed, method) unit, the aggregation, the mask report."""
    settings = settings or study_settings()
    methods = study_methods(settings)
    per_seed = settings.mask_model_per_seed
    masks = Pipeline([]) if per_seed else mask_precomputation.create_pipeline()
    curves = Node(draw_study_curves, inputs={unit_key(s, m, "history"): f"study_seed{s}.{m}.history"
                                             for s in settings.seeds for m in methods},
                  outputs="study_curves_figure", name="draw_study_curves", tags=["reporting"])
    return (data_ingestion.create_pipeline() + masks + _units(methods, settings.seeds, per_seed)
            + Pipeline([_aggregate(_results(methods, settings.seeds), "study", "aggregate_study"), curves])
            + _mask_reports(methods, settings.seeds, per_seed))


def create_ablation_pipeline(settings: StudySettings | None = None, **kwargs) -> Pipeline:
    """:data:`STUDY_ABLATIONS` on the study's seeds, aggregated with the study's DHAT units (run ``study`` first)."""
    settings = settings or study_settings()
    results = _results(STUDY_ABLATIONS, settings.seeds) | _results(("dhat",), settings.seeds)
    return (_units(STUDY_ABLATIONS, settings.seeds, settings.mask_model_per_seed, train_masks=False)
            + Pipeline([_aggregate(results, "study_ablations", "aggregate_study_ablations")]))
