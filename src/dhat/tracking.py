"""MLflow tracking of every run, through kedro-mlflow (the optional ``mlflow`` extra).

With ``pip install -e ".[mlflow]"``, kedro-mlflow's own hook opens one MLflow run per
``kedro run`` (store and experiment in ``conf/base/mlflow.yml``) and logs the parameters
of every node. :class:`MlflowTrackingHook` adds what only this project knows:

- each training node's history as per-epoch metrics (``<namespace>.loss``,
  ``<namespace>.val_pgd10``, ... with the epoch as step);
- each evaluation's final accuracies (``<namespace>.clean``, ``<namespace>.pgd50``, ...,
  and the sweeps' scores), prefixed by the namespace so methods and seeds never collide;
- the report, its tables and its figures as artifacts.

Without the extra the hook does nothing: MLflow is looked up, not imported at start-up.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pandas as pd
from kedro.framework.hooks import hook_impl
from matplotlib.figure import Figure

__all__ = ["MlflowTrackingHook", "final_metrics", "epoch_metrics", "mlflow_runs_closed"]

logger = logging.getLogger(__name__)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(float(value)) else None


def final_metrics(prefix: str, metrics: Mapping[str, Any]) -> dict[str, float]:
    """``{<prefix>.<attack>: accuracy}`` from an evaluation's metrics (the attack suite's ``best``
    section, or a sweep's ``accuracy`` records), with the interval bounds where there are any."""
    found: dict[str, float] = {}
    for attack, value in (metrics.get("best") or {}).items():
        if (number := _number(value)) is not None:
            found[f"{prefix}.{attack}"] = number
    for attack, interval in (metrics.get("intervals") or {}).items():
        for bound in ("low", "high"):
            if (number := _number(interval.get(bound))) is not None:
                found[f"{prefix}.{attack}_{bound}"] = number
    for attack, interval in (metrics.get("accuracy") or {}).items():
        for key, suffix in (("estimate", ""), ("low", "_low"), ("high", "_high")):
            if (number := _number(interval.get(key))) is not None:
                found[f"{prefix}.{attack}{suffix}"] = number
    return found


@contextmanager
def mlflow_runs_closed() -> Iterator[None]:
    """End, on leaving, the MLflow runs that a Kedro session inside left active in this process.

    kedro-mlflow reopens its run in ``before_node_run`` (nested, for threaded runners); in the main
    thread that stacks the same run twice and its ``after_pipeline_run`` ends only one of them. A
    ``kedro run`` ends with its process, so this matters only for sessions run from Python one
    after another (``dhat.units.run_unit``, the tests): the next session would log its parameters
    into the previous run. Runs that were active on entry are left as they were.
    """
    mlflow = sys.modules.get("mlflow")
    outer = None if mlflow is None or (run := mlflow.active_run()) is None else run.info.run_id
    try:
        yield
    finally:
        mlflow = sys.modules.get("mlflow")  # imported by the session when the extra is installed
        while mlflow is not None and (run := mlflow.active_run()) is not None and run.info.run_id != outer:
            mlflow.end_run()


def epoch_metrics(prefix: str, history: pd.DataFrame) -> list[tuple[str, float, int]]:
    """``(<prefix>.<column>, value, epoch)`` for every numeric cell of a training history."""
    rows = []
    for _, row in history.iterrows():
        epoch = int(row["epoch"])
        for column, value in row.items():
            if column not in ("epoch", "method") and (number := _number(value)) is not None:
                rows.append((f"{prefix}.{column}", number, epoch))
    return rows


class MlflowTrackingHook:
    """Log metrics and the report into the active MLflow run (a no-op without kedro-mlflow or a run)."""

    def __init__(self) -> None:
        self._available = importlib.util.find_spec("kedro_mlflow") is not None

    def _active(self) -> Any:
        if not self._available:
            return None
        import mlflow  # noqa: PLC0415 - the optional extra

        return mlflow if mlflow.active_run() is not None else None

    @hook_impl
    def after_node_run(self, node: Any, outputs: dict[str, Any]) -> None:
        mlflow = self._active()
        if mlflow is None:
            return
        for name, value in outputs.items():
            prefix, _, kind = name.rpartition(".")
            if kind == "history" and isinstance(value, pd.DataFrame) and "epoch" in value:
                per_epoch: dict[int, dict[str, float]] = {}
                for key, number, epoch in epoch_metrics(prefix, value):
                    per_epoch.setdefault(epoch, {})[key] = number
                for epoch, numbers in per_epoch.items():  # one call per epoch, not one per metric
                    mlflow.log_metrics(numbers, step=epoch)
            elif kind == "metrics" and isinstance(value, Mapping):
                mlflow.log_metrics(final_metrics(prefix, value))
            elif "reporting" in node.tags:
                self._log_artifact(mlflow, name, value)

    @staticmethod
    def _log_artifact(mlflow: Any, name: str, value: Any) -> None:
        """Figures as PNG, Markdown as text, tables as CSV, under ``report/``."""
        if isinstance(value, Figure):
            mlflow.log_figure(value, f"report/{name}.png")
        elif isinstance(value, str):
            mlflow.log_text(value, f"report/{name}.md")
        elif isinstance(value, pd.DataFrame):
            mlflow.log_text(value.to_csv(index=False), f"report/{name}.csv")
