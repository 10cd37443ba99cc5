"""Kedro hooks of the project."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline

from dhat.parameters import STAGES, validate_parameters
from dhat.pipelines.composition import build_env, configured_parameters

logger = logging.getLogger(__name__)

#: Stages whose nodes live in a method namespace (the namespace names the method's YAML section).
_PER_METHOD_STAGES = {"training", "evaluation"}


class ParameterValidationHook:
    """Validate every parameter the run will use before the first node starts.

    The stages come from the nodes' tags (each node carries its stage's name), so the
    check follows whatever ``--pipelines``, ``--namespaces``, ``--tags`` or ``--nodes`` selected.
    """

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog) -> None:
        stages: set[str] = set()
        namespaces: set[str] = set()
        sections: set[str] = set()
        for node in pipeline.nodes:
            node_stages = set(node.tags) & set(STAGES)
            stages |= node_stages
            sections |= {name.removeprefix("params:").split(".")[0] for name in node.inputs if name.startswith("params:")}
            if node_stages & _PER_METHOD_STAGES:
                # The method's section is the parameter the node reads as "<section>.method": "dhat" for
                # the namespace dhat, for study_seed1.dhat, and for a sensitivity unit that varies dhat.
                namespaces |= {name.removeprefix("params:").removesuffix(".method") for name in node.inputs
                               if name.startswith("params:") and name.endswith(".method")}
        params = catalog.load("parameters")
        if "env" in run_params:
            _check_build_environment(run_params)
            _log_left_out_units(run_params)
        validate_parameters(params, stages, sorted(namespaces), sections)
        logger.info("Parameters checked for stages %s and methods %s", sorted(stages), sorted(namespaces) or "-")


def _selected(run_params: dict[str, Any]) -> list[str]:
    return list(run_params.get("pipeline_names") or ["__default__"])


def _check_build_environment(run_params: dict[str, Any]) -> None:
    """Stop when the run's environment would give the selected pipelines other units than they were built with.

    Kedro builds the pipelines before it reads ``--env``; the project's ``kedro run`` sets
    ``KEDRO_ENV`` from ``--env`` so the two agree. A session created in code with another
    ``env`` than ``KEDRO_ENV`` gets here.
    """
    from dhat.pipeline_registry import register_pipelines  # noqa: PLC0415 - the registry imports every pipeline

    built, wanted = build_env(), run_params.get("env") or None
    if (built or "local") == (wanted or "local"):
        return
    as_built, as_wanted = register_pipelines(built), register_pipelines(wanted)
    for name in _selected(run_params):
        if name in as_built and {n.name for n in as_built[name].nodes} != {n.name for n in as_wanted[name].nodes}:
            raise ValueError(
                f"pipeline {name!r} was built from the {built or 'base'} configuration (KEDRO_ENV), but this run uses "
                f"the environment {wanted!r}, whose lists give it other units; Kedro builds pipelines before it reads "
                f"--env. Run it as: KEDRO_ENV={wanted} kedro run --pipelines={name} (or export KEDRO_ENV={wanted})"
            )


def _log_left_out_units(run_params: dict[str, Any]) -> None:
    """Say which units the selected pipelines leave out because the configured data cannot serve them."""
    from dhat.pipeline_registry import planned_units  # noqa: PLC0415

    plans = planned_units(configured_parameters(build_env()))
    names = ["train_eval" if name == "__default__" else name for name in _selected(run_params)]
    for name in names:
        for unit, why in plans.get(name, ((), {}))[1].items():
            logger.info("%s leaves out %s: %s", name, unit, why)


#: Suffix of the node input that names a training node's resumable state (see the catalog).
TRAINING_STATE = "training_state"


class TrainingStateCleanupHook:
    """Remove a training node's resumable state once every output of the node is saved.

    Until then the state stays, so a crash between the end of training and the last save
    is resumed from the end of training instead of retrained.
    """

    def __init__(self) -> None:
        self._catalog: Any = None
        self._saved: dict[str, set[str]] = {}

    @hook_impl
    def after_catalog_created(self, catalog: Any) -> None:
        self._catalog = catalog
        self._saved = {}

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        state = next((name for name in node.inputs if name.endswith(TRAINING_STATE)), None)
        if state is None or self._catalog is None:
            return
        saved = self._saved.setdefault(node.name, set())
        saved.add(dataset_name)
        if saved >= set(node.outputs):
            path = Path(self._catalog.load(state))
            if path.exists():
                path.unlink()
                logger.info("%s: outputs saved; removed the training state %s", node.name, path)
            del self._saved[node.name]


class HeadlessFiguresHook:
    """Draw a run's figures with matplotlib's file-only backend (Agg).

    A run writes its figures to files, and a runner may draw them outside the main thread,
    where a desktop backend fails. Set when the run starts, not on import, so a notebook
    that only loads the catalog keeps its inline backend; ``MPLBACKEND`` is set too (unless
    the user chose one), so the worker processes a runner starts draw headless as well.
    """

    @hook_impl
    def before_pipeline_run(self) -> None:
        import matplotlib  # noqa: PLC0415 - only runs draw figures

        os.environ.setdefault("MPLBACKEND", "Agg")
        matplotlib.use("Agg")
