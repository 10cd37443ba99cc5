"""Kedro hooks of the project."""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline

from dhat.parameters import validate_parameters

logger = logging.getLogger(__name__)

# Node name (without namespace) -> the stage it belongs to.
_STAGE_OF_NODE = {
    "ingest_data": "data_ingestion",
    "train_mask_model": "mask_precomputation",
    "compute_attention_masks": "mask_precomputation",
    "train": "training",
    "evaluate": "evaluation",
    "transfer_attacks": "transfer",
    "build_report": "reporting",
}


class ParameterValidationHook:
    """Validate every parameter the run will use before the first node starts."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog) -> None:
        stages: set[str] = set()
        namespaces: set[str] = set()
        for node in pipeline.nodes:
            short_name = node.name.rsplit(".", 1)[-1]
            stages.add(_STAGE_OF_NODE.get(short_name, short_name))
            if node.namespace and short_name in ("train", "evaluate"):
                namespaces.add(node.namespace)
        params = catalog.load("parameters")
        validate_parameters(params, stages, sorted(namespaces))
        logger.info("Parameters checked for stages %s and methods %s", sorted(stages), sorted(namespaces) or "-")
