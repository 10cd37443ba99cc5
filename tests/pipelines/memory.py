"""In-memory Kedro runs for the pipeline tests (spaceflights-starter style)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner
from pytest import MonkeyPatch

REPO = Path(__file__).resolve().parents[2]


class KeptMemoryDataset(MemoryDataset):
    """A ``MemoryDataset`` the runner cannot release, so a test can read intermediate outputs afterwards."""

    def _release(self) -> None:
        pass


@contextmanager
def kedro_env(env: str) -> Iterator[None]:
    """``KEDRO_ENV=<env>`` for the block, as the project's ``kedro run --env <env>`` sets it (pipelines are built from it)."""
    with MonkeyPatch.context() as patch:
        patch.setenv("KEDRO_ENV", env)
        yield


def load_parameters(env: str = "test") -> dict[str, Any]:
    """The merged parameters of ``conf/base`` + ``conf/<env>``, as ``kedro run --env <env>`` sees them."""
    loader = OmegaConfigLoader(
        conf_source=str(REPO / "conf"), base_env="base", default_run_env=env, env=env,
        merge_strategy={"parameters": "soft"},
    )
    return dict(loader["parameters"])


def _param_entries(params: Mapping[str, Any], prefix: str = "params:") -> dict[str, Any]:
    """``params:a``, ``params:a.b``, ... for every nested key, as Kedro's context registers them."""
    entries: dict[str, Any] = {}
    for key, value in params.items():
        entries[f"{prefix}{key}"] = value
        if isinstance(value, Mapping):
            entries.update(_param_entries(value, f"{prefix}{key}."))
    return entries


def run_pipeline(pipeline: Pipeline, params: Mapping[str, Any], **inputs: Any) -> DataCatalog:
    """Run ``pipeline`` on an in-memory catalog holding ``inputs`` and ``params``; return the catalog."""
    datasets = {name: MemoryDataset(value) for name, value in {**_param_entries(params), **inputs}.items()}
    datasets["parameters"] = MemoryDataset(dict(params))
    for name in pipeline.inputs():  # where training nodes keep their resumable state: a fresh folder
        if name.endswith("training_state") and name not in datasets:
            datasets[name] = MemoryDataset(str(Path(tempfile.mkdtemp(prefix="dhat-state-")) / "training_state.pt"))
    catalog = DataCatalog(datasets)
    for name in pipeline.all_outputs():
        if name not in catalog:
            catalog[name] = KeptMemoryDataset()
    SequentialRunner().run(pipeline, catalog)
    return catalog
