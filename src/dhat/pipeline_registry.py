"""Project pipelines, registered explicitly and statically.

The composites are built from each stage's ``create_pipeline`` rather than by
indexing ``find_pipelines()``, which breaks ``--pipelines X`` on Kedro >= 1.5.
Which methods a composite trains comes from the groups of the method catalog
(:mod:`dhat.methods.catalog`); ``--namespaces=a,b`` narrows any of them to those methods.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from kedro.pipeline import Pipeline

from dhat.data.capabilities import Requirement
from dhat.external import external_settings
from dhat.methods.catalog import GROUPS, namespaces
from dhat.parameters import method_requirements
from dhat.pipelines import (
    analysis,
    data_ingestion,
    evaluate_external,
    evaluation,
    mask_precomputation,
    mask_sources,
    reporting,
    sensitivity,
    study,
    training,
    transfer,
    tune,
    tune_test,
)
from dhat.pipelines.composition import build_env, configured_parameters, usable_units
from dhat.pipelines.study.pipeline import study_methods
from dhat.stats.study import StudySettings
from dhat.stats.sweeps import DATA_MASK_SOURCES, MaskSourceSettings, SensitivitySettings
from dhat.tuning import PROTOCOL_NEEDS, TuneSettings

#: Composite pipeline -> the catalog groups whose methods it trains and evaluates.
COMPOSITES: dict[str, tuple[str, ...]] = {
    "train_eval": ("core", "oracle"),  # the paper's core comparison and DHAT's oracle; the CPU default
    "train_eval_paper": ("core", "baselines"),  # every method of the paper's tables 1 and 2
    "train_eval_baselines": ("baselines",),
    "train_eval_ablations": ("ablations", "mask_variants", "floe_variants"),
    "train_eval_all": GROUPS,
}


def train_eval(methods: tuple[str, ...]) -> Pipeline:
    """Data -> masks -> training, evaluation and analyses of ``methods`` -> transfer attacks -> report,
    the last three over the outputs of this run."""
    return (
        data_ingestion.create_pipeline()
        + mask_precomputation.create_pipeline()
        + training.create_pipeline(methods=methods)
        + evaluation.create_pipeline(methods=methods)
        + analysis.create_pipeline(methods=methods, after_evaluation=True)
        + reporting.create_run_pipeline(methods)
    )


def _source_needs(source: str) -> list[Requirement]:
    if source not in DATA_MASK_SOURCES:
        return []
    return [Requirement(DATA_MASK_SOURCES[source], "mask_sources", f"mask_sources.sources: {source}", "")]


def planned_units(params: Mapping[str, Any]) -> dict[str, tuple[tuple[str, ...], dict[str, str]]]:
    """Per pipeline whose units depend on the data, ``(units it runs, {unit left out: why})``.

    A unit is left out when the configured data cannot serve it: DHAT's oracle (true
    foreground masks) and the ``true`` mask source on CIFAR or an image folder, a method
    with external masks when ``data.external_masks`` is not set.
    """
    def methods_needs(namespace: str) -> list[Requirement]:
        return method_requirements(params, namespace)

    plans = {name: usable_units(namespaces(groups), methods_needs, params) for name, groups in COMPOSITES.items()}
    study_settings = StudySettings.from_dict(params.get("study"))
    plans["study"] = usable_units(study_methods(study_settings), methods_needs, params)
    plans["mask_sources"] = usable_units(MaskSourceSettings.from_dict(params.get("mask_sources")).sources,
                                         _source_needs, params)
    plans["tune"] = usable_units(TuneSettings.from_dict(params.get("tune")).protocols, _protocol_needs, params)
    return plans


def _protocol_needs(protocol: str) -> list[Requirement]:
    if protocol not in PROTOCOL_NEEDS:
        return []
    return [Requirement(PROTOCOL_NEEDS[protocol], "tune", f"tune.protocols: [..., {protocol}, ...]",
                        f"remove {protocol!r} from tune.protocols in conf/<env>/parameters_tune.yml")]


#: The pipelines last built, by the parameters they were built from (building them all takes about half a second).
_BUILT: dict[str, tuple[Mapping[str, Any], dict[str, Pipeline]]] = {}


def register_pipelines(env: str | None = None) -> dict[str, Pipeline]:
    """Map pipeline names to pipelines (``kedro run --pipelines=<name>``).

    ``env``: the configuration environment whose lists shape the pipelines (default
    ``KEDRO_ENV``, which the project's ``kedro run --env`` sets). Built again only when the
    configured parameters differ from the last build's for that environment.
    """
    params = configured_parameters(env)
    key = str(env if env is not None else build_env())
    if key in _BUILT and _BUILT[key][0] == params:
        return dict(_BUILT[key][1])
    built = _build(params)
    _BUILT[key] = (params, built)
    return dict(built)


def _build(params: Mapping[str, Any]) -> dict[str, Pipeline]:
    plans = planned_units(params)
    composites = {name: train_eval(plans[name][0]) for name in COMPOSITES}
    study_settings = dataclasses.replace(StudySettings.from_dict(params.get("study")), methods=plans["study"][0])
    source_settings = dataclasses.replace(MaskSourceSettings.from_dict(params.get("mask_sources")),
                                          sources=plans["mask_sources"][0])
    tune_settings = dataclasses.replace(TuneSettings.from_dict(params.get("tune")), protocols=plans["tune"][0])
    return {
        "data_ingestion": data_ingestion.create_pipeline(),
        "mask_precomputation": mask_precomputation.create_pipeline(),
        "training": training.create_pipeline(),
        "evaluation": evaluation.create_pipeline(),
        "analysis": analysis.create_pipeline() + analysis.create_figures_pipeline(),
        "transfer": transfer.create_pipeline(),
        "reporting": reporting.create_pipeline(),
        **composites,
        "study": study.create_pipeline(study_settings),
        "study_ablations": study.create_ablation_pipeline(study_settings),
        "sensitivity": sensitivity.create_pipeline(SensitivitySettings.from_dict(params.get("sensitivity"))),
        "mask_sources": mask_sources.create_pipeline(source_settings),
        "tune": tune.create_pipeline(tune_settings),
        "tune_test": tune_test.create_pipeline(tune_settings),
        "evaluate_external": evaluate_external.create_pipeline(tuple(external_settings(params.get("external_models")))),
        "__default__": composites["train_eval"],
    }
