"""Up-front validation of the run's parameters.

A typo in ``conf/`` or ``--params`` should fail in the first second, naming
the key, not after an hour of training. :func:`validate_parameters` checks
every section the run will use with the same core code the nodes use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dhat.analysis.settings import AnalysisSettings
from dhat.config import resolve_device
from dhat.data.registry import check_source
from dhat.evaluation.sections import EvaluationSettings, TransferSettings
from dhat.fitting import split_method_params
from dhat.methods import create_method
from dhat.models import available_models
from dhat.sweeps import MaskSourceSettings, SensitivitySettings
from dhat.training import TrainingConfig

__all__ = ["STAGES", "validate_parameters"]

#: The stages a node can belong to (its Kedro tag); the hook reads them from the pipeline.
STAGES = ("data_ingestion", "mask_precomputation", "training", "evaluation", "analysis", "transfer", "reporting")


def _validate_model(model: Mapping[str, Any] | None, section: str) -> None:
    names = ", ".join(available_models())
    if not isinstance(model, Mapping) or "name" not in model:
        raise ValueError(f"{section}.name is missing; choose one of {names}")
    if model["name"] not in available_models():
        raise ValueError(f"{section}.name={model['name']!r} is not a known architecture; choose one of {names}")


def _validate_data(data: Mapping[str, Any]) -> None:
    source = check_source(data.get("source", "embedded"))
    rho = data.get("embedded", {}).get("rho_train")
    if source == "embedded" and rho is not None and not 0.0 <= float(rho) <= 1.0:
        raise ValueError(f"data.embedded.rho_train must be in [0, 1], got {rho}")


def _validate_method(params: Mapping[str, Any], namespace: str) -> None:
    section = params.get(namespace)
    if not isinstance(section, Mapping) or "method" not in section:
        raise ValueError(
            f"no parameters for method namespace {namespace!r}: add a '{namespace}: {{method: {{name: ...}}}}' "
            "section to conf/<env>/parameters_methods.yml"
        )
    name, hyper, overrides = split_method_params(section["method"], f"{namespace}.method")
    create_method(name, hyper, section=f"{namespace}.method.params")
    if overrides:
        TrainingConfig.from_dict({**params.get("training", {}), **overrides}, section=f"{namespace}.method.training")


#: Parameter sections read as a whole by some nodes, validated when a node of the run reads them.
SECTION_SETTINGS: dict[str, Any] = {
    "analysis": AnalysisSettings,
    "sensitivity": SensitivitySettings,
    "mask_sources": MaskSourceSettings,
}


def validate_parameters(params: Mapping[str, Any], stages: Iterable[str], namespaces: Iterable[str],
                        sections: Iterable[str] = ()) -> None:
    """Raise ``ValueError`` naming the first invalid parameter of the stages that will run.

    Args:
        params: the run's merged parameters (``conf/`` + ``--params``).
        stages: which of :data:`STAGES` the run contains.
        namespaces: method namespaces whose training or evaluation runs.
        sections: top-level parameter sections the run's nodes read (those of
            :data:`SECTION_SETTINGS` are validated).
    """
    stages = set(stages)
    unknown = sorted(stages - set(STAGES))
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; known: {', '.join(STAGES)}")
    if "device" in params:
        resolve_device(str(params["device"]))
    if "data_ingestion" in stages:
        _validate_data(params.get("data", {}))
    if "mask_precomputation" in stages:
        mask = params.get("mask_model", {})
        _validate_model(mask.get("model"), "mask_model.model")
        TrainingConfig.from_dict(mask.get("training"), section="mask_model.training")
    if "training" in stages:
        _validate_model(params.get("model"), "model")
        TrainingConfig.from_dict(params.get("training"), section="training")
    for namespace in namespaces:
        _validate_method(params, namespace)
    if "evaluation" in stages:
        EvaluationSettings.from_dict(params.get("evaluation"))
    for section in sorted(set(sections) & set(SECTION_SETTINGS)):
        SECTION_SETTINGS[section].from_dict(params.get(section))
    if "transfer" in stages:
        TransferSettings.from_dict(params.get("transfer"))
