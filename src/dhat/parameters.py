"""Up-front validation of the run's parameters.

A typo in ``conf/`` or ``--params`` should fail in the first second, naming
the key, not after an hour of training. :func:`validate_parameters` checks
every section the run will use with the same core code the nodes use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dhat.analysis.settings import AnalysisSettings
from dhat.attention.reference_model import MaskModelSettings
from dhat.config import resolve_device
from dhat.data.capabilities import Requirement, describe_unmet, unmet_requirements
from dhat.data.registry import check_source, source_provides
from dhat.data.storage import check_storage
from dhat.engine.fitting import split_method_params
from dhat.engine.recipe import TrainingConfig
from dhat.evaluation.sections import EvaluationSettings, TransferSettings
from dhat.external import external_settings
from dhat.methods import create_method
from dhat.models import available_models
from dhat.stats.sweeps import DATA_MASK_SOURCES, MaskSourceSettings, SensitivitySettings
from dhat.tuning.settings import TuneSettings
from dhat.tuning.space import apply_values, corner_values

__all__ = ["STAGES", "method_requirements", "run_requirements", "validate_parameters"]

#: The stages a node can belong to (its Kedro tag); the hook reads them from the pipeline.
STAGES = ("data_ingestion", "mask_precomputation", "training", "evaluation", "analysis", "transfer", "reporting")


def _validate_model(model: Mapping[str, Any] | None, section: str) -> None:
    names = ", ".join(available_models())
    if not isinstance(model, Mapping) or "name" not in model:
        raise ValueError(f"{section}.name is missing; choose one of {names}")
    if model["name"] not in available_models():
        raise ValueError(f"{section}.name={model['name']!r} is not a known architecture; choose one of {names}")


def _validate_size(value: Any, key: str) -> None:
    """``data.train_size`` / ``data.test_size``: null, a count >= 1 or a fraction in (0, 1)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a count (int >= 1), a fraction in (0, 1) (float) or null (all), got {value!r}")
    if isinstance(value, float) and not 0.0 < value < 1.0:
        raise ValueError(f"{key} as a fraction must lie in (0, 1), got {value}; pass an int for a count")
    if isinstance(value, int) and value < 1:
        raise ValueError(f"{key} must be >= 1 (or null for all images), got {value}")


def _validate_data(data: Mapping[str, Any]) -> None:
    source = check_source(data.get("source", "embedded"))
    rho = data.get("embedded", {}).get("rho_train")
    if source == "embedded" and rho is not None and not 0.0 <= float(rho) <= 1.0:
        raise ValueError(f"data.embedded.rho_train must be in [0, 1], got {rho}")
    for key in ("train_size", "test_size"):
        _validate_size(data.get(key), f"data.{key}")
    check_storage(data.get("storage", "auto"), source)
    if source == "image_folder" and data.get("root") and not Path(str(data["root"])).is_dir():
        raise ValueError(f"data.root={str(data['root'])!r} does not exist; the image_folder source needs a folder "
                         "<root>/{train,test}/<class>/<image> (set data.root, e.g. --params data.root=<folder>)")
    masks = data.get("external_masks")
    if masks and not Path(str(masks)).exists():
        raise ValueError(f"data.external_masks={str(masks)!r} does not exist; give a folder of per-image masks "
                         "mirroring the image folder, or a .npy/.npz array aligned with the training images")


def _found_key(section: Mapping[str, Any], key: str, prefix: str) -> str | None:
    """The dotted path of the first ``key`` in the nested ``section`` (``dhat_awp.method.params.base.mask_source``)."""
    for name, value in section.items():
        if name == key:
            return f"{prefix}.{name}"
        if isinstance(value, Mapping):
            found = _found_key(value, key, f"{prefix}.{name}")
            if found:
                return found
    return None


_FIXES = {
    "true": "leave {ns} out of the run (--namespaces with the other methods), or train on data that has them "
            "(data.source: embedded). Composite pipelines leave it out by themselves when the data configured in "
            "conf/<env> has none: set data.source there rather than with --params",
    "external": "set data.external_masks to the folder or array of masks (docs/data.md) and rerun data_ingestion, "
                "or train {ns} with mask_source: gradcam",
}


def method_requirements(params: Mapping[str, Any], namespace: str) -> list[Requirement]:
    """What the method of ``namespace`` (its ``<namespace>.method`` section) needs from the data.

    Raises:
        ValueError: for an invalid method section (as :func:`validate_parameters`).
    """
    section = params.get(namespace)
    if not isinstance(section, Mapping) or not isinstance(section.get("method"), Mapping):
        return []
    name, hyper, _ = split_method_params(section["method"], f"{namespace}.method")
    method = create_method(name, hyper, section=f"{namespace}.method.params")
    settings = method.mask_settings() if method.needs_masks else None
    if settings is None or settings.needs is None:
        return []
    key = (_found_key(section["method"].get("params") or {}, "mask_source", f"{namespace}.method.params")
           or f"{namespace}.method.params.mask_source (the method's default)")
    return [Requirement(settings.needs, namespace, f"{key}: {settings.source}", _FIXES[settings.source].format(ns=namespace))]


def _mask_source_requirements(params: Mapping[str, Any]) -> list[Requirement]:
    settings = MaskSourceSettings.from_dict(params.get("mask_sources"))
    return [Requirement(DATA_MASK_SOURCES[s], "mask_sources", f"mask_sources.sources: [..., {s}, ...]",
                        f"remove {s!r} from mask_sources.sources in conf/<env>/parameters_mask_sources.yml")
            for s in settings.sources if s in DATA_MASK_SOURCES]


def run_requirements(params: Mapping[str, Any], namespaces: Iterable[str], sections: Iterable[str] = ()) -> list[Requirement]:
    """Everything the run's methods (``namespaces``) and whole-section readers (``sections``) need from the data."""
    needs = [r for ns in namespaces for r in method_requirements(params, ns)]
    if "mask_sources" in set(sections):
        needs += _mask_source_requirements(params)
    return needs


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


def _validate_tune(params: Mapping[str, Any]) -> TuneSettings:
    """``tune``, and every method's space written into its section: a path the method does not have fails here."""
    settings = TuneSettings.from_dict(params.get("tune"))
    for namespace in (*settings.methods, *settings.baselines):
        _validate_method(params, namespace)
    for namespace in settings.methods:
        for values in corner_values(settings.dimensions(namespace)):
            section = apply_values(params[namespace]["method"], values)
            name, hyper, overrides = split_method_params(section, f"{namespace}.method")
            try:
                create_method(name, hyper, section=f"{namespace}.method.params")
                TrainingConfig.from_dict({**params.get("training", {}), **overrides},
                                         section=f"{namespace}.method.training")
            except (TypeError, ValueError) as error:
                raise ValueError(f"tune.spaces.{namespace} / tune.shared_space: a value of the space does not fit "
                                 f"the method's section ({values}): {error}") from error
    return settings


#: Parameter sections read as a whole by some nodes, validated when a node of the run reads them.
SECTION_SETTINGS: dict[str, Any] = {
    "analysis": AnalysisSettings,
    "sensitivity": SensitivitySettings,
    "mask_sources": MaskSourceSettings,
}
#: Sections whose check needs the other sections too (``tune`` writes its spaces into the methods' sections).
SECTION_CHECKS: dict[str, Any] = {"tune": _validate_tune,
                                  "external_models": lambda params: external_settings(params.get("external_models"))}


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
        settings = MaskModelSettings.from_dict(mask)
        if not settings.pretrained:
            _validate_model(mask.get("model"), "mask_model.model")
        if not settings.loads:
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
    for section in sorted(set(sections) & set(SECTION_CHECKS)):
        SECTION_CHECKS[section](params)
    if "transfer" in stages:
        TransferSettings.from_dict(params.get("transfer"))
    _check_requirements(params, namespaces, sections)


def _check_requirements(params: Mapping[str, Any], namespaces: Iterable[str], sections: Iterable[str]) -> None:
    """Stop when the data cannot give the run's methods and analyses what they need (one message for all)."""
    needs = run_requirements(params, namespaces, sections)
    if needs:
        data = params.get("data", {})
        provided = source_provides(data)
        unmet = unmet_requirements(needs, provided)
        if unmet:
            raise ValueError(describe_unmet(unmet, data, provided))
