"""Real Kedro sessions in scratch projects: the repository's conf/ and package, the data under a temporary folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from dhat.tracking import mlflow_runs_closed
from tests.pipelines.memory import REPO


def run_session(project: Path, env: str = "test", **run_kwargs: Any) -> Any:
    """``kedro run --env <env>`` (default ``test``) with the repository's conf/ and ``project`` as the data root."""
    bootstrap_project(REPO)
    params = run_kwargs.pop("params", None)
    # A CLI run is one process per `kedro run`; here the runs kedro-mlflow leaves active are ended as its end would.
    with mlflow_runs_closed(), KedroSession.create(project_path=project, env=env, runtime_params=params,
                                                   conf_source=str(REPO / "conf")) as session:
        return session.run(**run_kwargs)


def latest(path: Path) -> Path:
    """Newest version of a versioned dataset folder (Kedro's timestamps sort lexicographically)."""
    return sorted(p for p in path.iterdir() if p.is_dir())[-1] / path.name


def scratch(root: Path) -> Path:
    """``root`` made a project folder: the repository's pyproject.toml and telemetry answer, an empty src/."""
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    shutil.copy(REPO / ".telemetry", root / ".telemetry")
    (root / "src").mkdir(exist_ok=True)
    return root


def unit_metrics(project: Path) -> dict[str, dict]:
    """Every unit's metrics (the newest version of each), by its path under 07_model_output."""
    root = project / "data/07_model_output"
    found = {}
    for folder in sorted(root.rglob("metrics.json")):
        if folder.is_dir():
            found[str(folder.relative_to(root))] = json.loads(latest(folder).read_text())
    return found


def timeless(value: Any) -> Any:
    """Metrics without their wall-clock figures."""
    if isinstance(value, dict):
        return {k: timeless(v) for k, v in value.items() if "second" not in k and "time" not in k}
    if isinstance(value, list):
        return [timeless(v) for v in value]
    return value
