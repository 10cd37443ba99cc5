"""Nodes of the ``sensitivity`` pipeline: one training run per grid value, a light evaluation, one figure per parameter."""

from __future__ import annotations

import logging
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from dhat.analysis.figures import sensitivity_figure
from dhat.pipelines.training.nodes import train_method_with
from dhat.stats.sweeps import SensitivitySettings, grid_value, score_checkpoint, sensitivity_table

logger = logging.getLogger(__name__)


def train_grid_point(grid_point: str, sensitivity: dict[str, Any], **inputs: Any):
    """:func:`~dhat.pipelines.training.nodes.train_method` with one grid value (``"lambda1=0p5"``) and the sweep's seed."""
    settings = SensitivitySettings.from_dict(sensitivity)
    parameter, value = grid_value(settings, grid_point)
    logger.info("Sensitivity: %s with %s = %g (seed %d)", settings.namespace, parameter, value, settings.seed)
    return train_method_with(inputs, seed=settings.seed, method_params={parameter: value})


def evaluate_grid_point(grid_point: str, sensitivity: dict[str, Any], model_best: dict[str, Any],
                        test_set: dict[str, np.ndarray], evaluation: dict[str, Any], device: str) -> dict[str, Any]:
    """Clean and the sweep's attacks on every test image, with intervals and per-image flags."""
    settings = SensitivitySettings.from_dict(sensitivity)
    parameter, value = grid_value(settings, grid_point)
    result = score_checkpoint(model_best, test_set, evaluation, settings.attacks, device)
    return {"parameter": parameter, "value": value, "seed": settings.seed, **result}


def summarise_sensitivity(method: dict[str, Any], **unit_metrics: dict[str, Any]) -> pd.DataFrame:
    """Every run of the grid in one long table (``data/08_reporting/sensitivity/sensitivity.csv``), each
    compared paired with the run at its parameter's configured value."""
    return sensitivity_table(list(unit_metrics.values()), method.get("params") or {})


def draw_sensitivity(sensitivity: dict[str, Any], method: dict[str, Any],
                     **unit_metrics: dict[str, Any]) -> tuple[pd.DataFrame, plt.Figure]:
    """One parameter's table and figure: clean and robust accuracy against its values (default marked)."""
    settings = SensitivitySettings.from_dict(sensitivity)
    table = sensitivity_table(list(unit_metrics.values()), method.get("params") or {})
    parameter = str(table["parameter"].iloc[0])
    default = (method.get("params") or {}).get(parameter)
    default_value = float(default) if isinstance(default, int | float) else None
    return table, sensitivity_figure(table, parameter, settings.attacks, default_value, settings.namespace)
