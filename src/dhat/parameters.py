"""Up-front validation of the run's parameters.

A typo in ``conf/`` or ``--params`` should fail in the first second, naming
the key, not after an hour of training. :func:`validate_parameters` checks
every section the run will use with the same code the nodes use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dhat.config import resolve_device
from dhat.methods import create_method
from dhat.models import MODEL_NAMES
from dhat.training import TrainingConfig

__all__ = ["validate_parameters"]


def _validate_model(model: Mapping[str, Any] | None, section: str) -> None:
    if not isinstance(model, Mapping) or "name" not in model:
        raise ValueError(f"{section}.name is missing; choose one of {', '.join(MODEL_NAMES)}")
    if model["name"] not in MODEL_NAMES:
        raise ValueError(f"{section}.name={model['name']!r} is not a known architecture; choose one of {', '.join(MODEL_NAMES)}")


def _validate_data(data: Mapping[str, Any]) -> None:
    from dhat.pipelines.data_ingestion.nodes import SOURCES

    source = data.get("source", "embedded")
    if source not in SOURCES:
        raise ValueError(f"data.source={source!r} is not supported; choose one of {', '.join(SOURCES)}")
    rho = data.get("embedded", {}).get("rho_train")
    if source == "embedded" and rho is not None and not 0.0 <= float(rho) <= 1.0:
        raise ValueError(f"data.embedded.rho_train must be in [0, 1], got {rho}")


def validate_parameters(params: Mapping[str, Any], stages: Iterable[str], namespaces: Iterable[str]) -> None:
    """Raise ``ValueError`` naming the first invalid parameter of the stages that will run.

    Args:
        params: the run's merged parameters (``conf/`` + ``--params``).
        stages: which stages the run contains (``data_ingestion``, ``mask_precomputation``,
            ``training``, ``evaluation``, ``transfer``, ``reporting``).
        namespaces: method namespaces whose training or evaluation runs.
    """
    stages = set(stages)
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
    from dhat.pipelines.training.nodes import split_method_params

    for namespace in namespaces:
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
    if "evaluation" in stages:
        from dhat.pipelines.evaluation.nodes import evaluation_config

        evaluation_config(params.get("evaluation", {}))
    if "transfer" in stages:
        from dhat.pipelines.transfer.nodes import transfer_config

        transfer_config(params.get("transfer", {}))
