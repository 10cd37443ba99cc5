"""Building blocks of the composite pipelines: one template per namespace, shared nodes run last, and the
configuration the pipelines are built from (the environment's lists and its data's capabilities)."""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from kedro.pipeline import Node, Pipeline

from dhat.configuration import CONF_SOURCE, PROJECT_CONFIG_LOADER_ARGS
from dhat.data.capabilities import CAPABILITIES, Requirement, unmet_requirements
from dhat.data.registry import source_provides
from dhat.methods.catalog import namespaces


def per_method(
    template: Callable[[], Pipeline], methods: Iterable[str] | None, inputs: set[str], parameters: set[str]
) -> Pipeline:
    """``template()`` under the namespace of each method (default: every method of the catalog).

    ``inputs`` and ``parameters`` are shared by all namespaces and keep their names;
    everything else the template reads or writes is prefixed with the namespace
    (``params:method`` -> ``params:dhat.method``, ``metrics`` -> ``dhat.metrics``).
    """
    chosen = namespaces() if methods is None else tuple(methods)
    # One Pipeline of the namespaced copies: summing them would rebuild the growing pipeline once per method.
    return Pipeline([Pipeline(template(), namespace=m, inputs=inputs, parameters=parameters) for m in chosen])


def gather(**outputs: Any) -> dict[str, Any]:
    """Node: the outputs it is given, as one ``{unit: output}`` mapping (the keywords are the units).

    Lets a node over many units (a report, a figure) read the outputs of this run as real
    inputs, so Kedro orders it after them and kedro-viz draws where its numbers come from.
    """
    return dict(outputs)


def gather_node(sources: Mapping[str, str], output: str, name: str, tags: list[str]) -> Node:
    """A :func:`gather` node: ``sources`` maps each unit (keyword) to the dataset it reads."""
    with warnings.catch_warnings():  # the sources are namespaced outputs ("dhat.metrics"), dots on purpose
        warnings.filterwarnings("ignore", message="One or more dataset names contain")
        return Node(gather, inputs=dict(sources), outputs=output, name=name, tags=tags)


def build_env() -> str | None:
    """The environment the pipelines are built for: ``KEDRO_ENV`` (the project's ``kedro run --env`` sets it)."""
    return os.environ.get("KEDRO_ENV") or None


def configuration_fingerprint(conf: Path) -> tuple[tuple[str, int, int], ...]:
    """``(file, mtime_ns, size)`` of every file under ``conf``: changes whenever a configuration file does."""
    found = []
    for path in sorted(conf.rglob("*")):
        if path.is_file():
            stat = path.stat()
            found.append((str(path.relative_to(conf)), stat.st_mtime_ns, stat.st_size))
    return tuple(found)


#: configured_parameters' last answers, by folder, Kedro environment, files and process environment (a session asks
#: several times: Kedro's registry, the parameter check, the left-out units).
_PARAMETERS: dict[tuple[Any, ...], Mapping[str, Any]] = {}


def configured_parameters(env: str | None = None) -> Mapping[str, Any]:
    """The parameters of ``conf/base`` merged with ``env`` (default :func:`build_env`), read when the pipelines are built.

    For the few lists that decide a pipeline's *shape* (one namespace per value, such as the
    sensitivity grid) and the data a composite is built for: Kedro builds pipelines before
    it loads the run's parameters, so these come from the configuration files, not from
    ``--params``. ``{}`` when the project's configuration folder is not found (callers then
    fall back to their defaults).
    """
    from kedro.config import OmegaConfigLoader  # noqa: PLC0415

    conf = Path.cwd() / CONF_SOURCE
    if not conf.is_dir():
        return {}
    env = env if env is not None else build_env()
    # ${oc.env:...} may appear in parameters, so the process environment is part of the key.
    key = (str(conf), env, configuration_fingerprint(conf), tuple(sorted(os.environ.items())))
    if key not in _PARAMETERS:
        args = dict(PROJECT_CONFIG_LOADER_ARGS)
        with warnings.catch_warnings():  # Kedro's loader calls a deprecated OmegaConf API; not ours to fix
            warnings.filterwarnings("ignore", message="register_new_resolver")
            loader = OmegaConfigLoader(conf_source=str(conf), env=env, **args)
            parameters = loader["parameters"]
        if len(_PARAMETERS) >= 8:
            _PARAMETERS.clear()
        _PARAMETERS[key] = parameters
    return copy.deepcopy(_PARAMETERS[key])  # callers may change their copy


def configured_section(section: str, env: str | None = None) -> Mapping[str, Any]:
    """The parameter ``section`` of :func:`configured_parameters` (``{}`` when it is absent)."""
    return configured_parameters(env).get(section) or {}


def usable_units(units: Iterable[str], needs: Callable[[str], list[Requirement]],
                 params: Mapping[str, Any]) -> tuple[tuple[str, ...], dict[str, str]]:
    """``units`` split into those the configured data can serve and ``{left-out unit: why}``.

    ``needs(unit)`` lists a unit's requirements (:mod:`dhat.data.capabilities`); a unit
    whose needs cannot even be computed (an invalid section) is kept, so the run's
    parameter check reports the error. Without configuration everything is kept.
    """
    if not params:
        return tuple(units), {}
    try:
        provided = source_provides(params.get("data") or {})
    except ValueError:
        return tuple(units), {}
    kept: list[str] = []
    left_out: dict[str, str] = {}
    for unit in units:
        try:
            unmet = unmet_requirements(needs(unit), provided)
        except ValueError:
            unmet = []
        if unmet:
            source = (params.get("data") or {}).get("source", "embedded")
            left_out[unit] = "; ".join(f"{r.key} needs {CAPABILITIES[r.capability]}, which the configured data "
                                       f"(data.source={source!r} in conf/) does not provide" for r in unmet)
        else:
            kept.append(unit)
    return tuple(kept), left_out
