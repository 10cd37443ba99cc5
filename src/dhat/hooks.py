"""Kedro hooks of the project."""

from __future__ import annotations

import logging
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
        for node in pipeline.nodes:
            node_stages = set(node.tags) & set(STAGES)
            stages |= node_stages
            if node.namespace and node_stages & _PER_METHOD_STAGES:
                # "dhat" or, in the study, "study_seed1.dhat": the last part names the method's section.
                namespaces.add(node.namespace.rsplit(".", 1)[-1])
        params = catalog.load("parameters")
        validate_parameters(params, stages, sorted(namespaces))
        logger.info("Parameters checked for stages %s and methods %s", sorted(stages), sorted(namespaces) or "-")
