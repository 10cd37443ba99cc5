"""Kedro hooks of the project."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline

from dhat.parameters import STAGES, validate_parameters

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
        validate_parameters(params, stages, sorted(namespaces), sections)
        logger.info("Parameters checked for stages %s and methods %s", sorted(stages), sorted(namespaces) or "-")


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
