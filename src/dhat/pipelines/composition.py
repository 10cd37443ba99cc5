"""Building blocks of the composite pipelines: one template per namespace, and shared nodes run last."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from kedro.pipeline import Node, Pipeline

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
    return sum(
        (Pipeline(template(), namespace=m, inputs=inputs, parameters=parameters) for m in chosen),
        Pipeline([]),
    )


def node_after(
    func: Callable[..., Any],
    inputs: list[str],
    outputs: str | list[str],
    name: str,
    after: list[str] | None,
    tags: list[str],
) -> Pipeline:
    """A one-node pipeline whose inputs are ``inputs`` plus ``after``, so it runs once those exist.

    The transfer and report nodes read their inputs from disk (whatever methods have
    results); naming this run's per-method outputs as extra inputs only orders them.
    Those names carry a namespace ("dhat.metrics") on purpose, so Kedro's warning
    about dots in dataset names does not apply here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="One or more dataset names contain")
        return Pipeline([Node(func, inputs=[*inputs, *(after or [])], outputs=outputs, name=name, tags=tags)])


def configured_section(section: str) -> Mapping[str, Any]:
    """The parameter ``section`` of ``conf/base`` merged with the ``KEDRO_ENV`` environment, read when
    the pipelines are built.

    For the few lists that decide a pipeline's *shape* (one namespace per value, such as the
    sensitivity grid): Kedro builds pipelines before it loads the run's parameters, so these
    lists come from the configuration files, not from ``--params``. ``{}`` when the project's
    configuration folder is not found (the caller falls back to its defaults).
    """
    from kedro.framework.project import settings  # noqa: PLC0415 - the project settings exist once Kedro has started

    conf = Path.cwd() / settings.CONF_SOURCE
    if not conf.is_dir():
        return {}
    args = {"base_env": "base", "default_run_env": "local", **settings.CONFIG_LOADER_ARGS}
    with warnings.catch_warnings():  # Kedro's loader calls a deprecated OmegaConf API; not ours to fix
        warnings.filterwarnings("ignore", message="register_new_resolver")
        loader = settings.CONFIG_LOADER_CLASS(conf_source=str(conf), env=os.environ.get("KEDRO_ENV"), **args)
        return loader["parameters"].get(section) or {}
