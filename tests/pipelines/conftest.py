"""Pipelines on tiny data: the ``test`` environment's parameters, in-memory catalogs, ``SequentialRunner``."""

from __future__ import annotations

import os
from typing import Any

import pytest

from dhat.pipelines import data_ingestion, mask_precomputation
from tests.pipelines.memory import load_parameters, run_pipeline


@pytest.fixture(scope="session")
def params() -> dict[str, Any]:
    return load_parameters("test")


@pytest.fixture(scope="session")
def ingested(params) -> dict[str, Any]:
    """The outputs of ``data_ingestion`` on the test environment's data."""
    catalog = run_pipeline(data_ingestion.create_pipeline(), params)
    return {name: catalog.load(name) for name in ("train_set", "val_set", "test_set", "test_variants", "dataset_info")}


@pytest.fixture(scope="session")
def masks(params, ingested) -> dict[str, Any]:
    """The outputs of ``mask_precomputation``."""
    catalog = run_pipeline(mask_precomputation.create_pipeline(), params, **ingested)
    return {name: catalog.load(name) for name in ("mask_model", "mask_model_history", "attention_masks", "mask_quality")}


@pytest.fixture(scope="module", autouse=True)
def mlflow_store(tmp_path_factory):
    """Where kedro-mlflow (if installed) records a module's runs: a scratch SQLite file, not the repository's data/."""
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    yield
    if previous is None:
        del os.environ["MLFLOW_TRACKING_URI"]
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous
