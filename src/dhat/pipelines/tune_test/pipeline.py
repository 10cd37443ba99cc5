"""``tune_test``: the configurations ``tune`` chose, trained on fresh seeds and scored with the study's protocol.

Per protocol ``p``, seed ``k`` of ``tune.test_seeds`` and tuned method ``m``: the namespace
``fresh_<p>_seed<k>.<m>`` trains ``tune_<p>.<m>.chosen`` with seed ``k`` and evaluates it
like a study unit; the untuned ``tune.baselines`` (the paper's DHAT) train once per seed in
``fresh_untuned_seed<k>.<b>`` and join every protocol's comparison. Then per protocol the
table over seeds and the paired differences of ``tune.comparisons``, and one report.
Run ``tune`` first: this pipeline reads the chosen configurations from disk.
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from dhat.pipelines import data_ingestion, mask_precomputation
from dhat.pipelines.composition import configured_section, per_method
from dhat.pipelines.evaluation.pipeline import SHARED_PARAMS as EVALUATION_PARAMS
from dhat.pipelines.evaluation.pipeline import evaluation_template
from dhat.pipelines.study.nodes import train_method_with_seed
from dhat.pipelines.training.pipeline import SHARED_PARAMS as TRAINING_PARAMS
from dhat.pipelines.training.pipeline import TRAINING_INPUTS
from dhat.pipelines.tune_test.nodes import aggregate_fresh, train_chosen_with_seed, write_tuning_report
from dhat.stats.study import unit_key
from dhat.tuning import TuneSettings

_SHARED_DATA = {"train_set", "val_set", "test_set", "test_variants", "attention_masks", "dataset_info"}
_SHARED_PARAMS = TRAINING_PARAMS | EVALUATION_PARAMS
_KINDS = ("metrics", "per_image")
#: Namespace prefix of the untuned baselines' fresh runs.
UNTUNED = "untuned"


def _tuned_template() -> Pipeline:
    train = Node(train_chosen_with_seed,
                 inputs=["seed", "chosen", "train_set", "val_set", "attention_masks", "dataset_info", "params:model",
                         "params:training", "params:device", "training_state"],
                 outputs=["model_best", "model_last", "history"], name="train", tags=["training"])
    return Pipeline([train]) + evaluation_template()


def _baseline_template() -> Pipeline:
    train = Node(train_method_with_seed, inputs={"seed": "seed", **TRAINING_INPUTS},
                 outputs=["model_best", "model_last", "history"], name="train", tags=["training"])
    return Pipeline([train]) + evaluation_template()


def _tuned_units(protocol: str, methods: tuple[str, ...], seed: int) -> Pipeline:
    units = Pipeline([])
    for method in methods:
        units += Pipeline(_tuned_template(), namespace=method, inputs=_SHARED_DATA | {"seed"},
                          parameters=_SHARED_PARAMS)
    # each method's chosen configuration comes from its tune unit, outside these namespaces
    chosen = {f"{m}.chosen": f"tune_{protocol}.{m}.chosen" for m in methods}
    return Pipeline(units, namespace=f"fresh_{protocol}_seed{seed}", inputs={d: d for d in _SHARED_DATA} | chosen,
                    parameters=_SHARED_PARAMS)


def _baseline_units(baselines: tuple[str, ...], seed: int) -> Pipeline:
    units = per_method(_baseline_template, baselines, _SHARED_DATA | {"seed"}, _SHARED_PARAMS)
    return Pipeline(units, namespace=f"fresh_{UNTUNED}_seed{seed}",
                    inputs=_SHARED_DATA, parameters=_SHARED_PARAMS | {f"params:{b}.method" for b in baselines})


def _results(protocol: str, settings: TuneSettings) -> dict[str, str]:
    tuned = {unit_key(s, m, kind): f"fresh_{protocol}_seed{s}.{m}.{kind}"
             for s in settings.test_seeds for m in settings.methods for kind in _KINDS}
    untuned = {unit_key(s, b, kind): f"fresh_{UNTUNED}_seed{s}.{b}.{kind}"
               for s in settings.test_seeds for b in settings.baselines for kind in _KINDS}
    return tuned | untuned


def create_pipeline(settings: TuneSettings | None = None, **kwargs) -> Pipeline:
    """Fresh-seed units of every protocol's winners and of the baselines, an aggregation per protocol, the report."""
    settings = settings or TuneSettings.from_dict(configured_section("tune"))
    units = Pipeline([])
    for seed in settings.test_seeds:
        for protocol in settings.protocols:
            units += _tuned_units(protocol, settings.methods, seed)
        if settings.baselines:
            units += _baseline_units(settings.baselines, seed)
    aggregates = Pipeline([
        Node(aggregate_fresh, inputs={"protocol": f"tune_{p}.protocol", "tune": "params:tune", **_results(p, settings)},
             outputs=[f"fresh_{p}.table", f"fresh_{p}.paired_table", f"fresh_{p}.report"],
             name=f"fresh_{p}.aggregate_fresh", tags=["reporting"])
        for p in settings.protocols
    ])
    sections = {}
    for p in settings.protocols:
        sections |= {f"{p}__chosen": f"tune_{p}.report", f"{p}__test": f"fresh_{p}.report"}
    report = Pipeline([Node(write_tuning_report, inputs=sections, outputs="tuning_report", name="write_tuning_report",
                            tags=["reporting"])]) if sections else Pipeline([])
    return data_ingestion.create_pipeline() + mask_precomputation.create_pipeline() + units + aggregates + report
