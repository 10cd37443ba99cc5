"""Node of the ``transfer`` pipeline: black-box transfer between the trained models (paper table 6)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from dhat.checkpoints import load_classifier
from dhat.config import resolve_device
from dhat.data.splits import index_set, stratified_indices
from dhat.evaluation import AttackSuiteConfig
from dhat.reporting import order_methods
from dhat.tensors import to_device_set
from dhat.transfer import transfer_matrix

logger = logging.getLogger(__name__)

_KEYS = {"enabled", "n_images", "subset_seed", "attacks", "methods", "suite"}


def transfer_config(params: dict[str, Any]) -> AttackSuiteConfig:
    """Validate the ``transfer`` section and return its attack settings."""
    unknown = set(params) - _KEYS
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(f'transfer.{k}' for k in sorted(unknown))}; valid: {', '.join(sorted(_KEYS))}")
    if params.get("n_images") is not None and int(params["n_images"]) < 1:
        raise ValueError(f"transfer.n_images must be >= 1 or null (all test images), got {params['n_images']}")
    return AttackSuiteConfig.from_dict({"autoattack": False, **(params.get("suite") or {})}, section="transfer.suite")


def transfer_attacks(
    trained_models: dict[str, dict[str, Any]],
    test_set: dict[str, np.ndarray],
    params: dict[str, Any],
    device: str,
    *upstream: Any,
) -> pd.DataFrame:
    """Craft examples on every trained model (source) and score them on every other (target).

    ``trained_models`` are the latest selected checkpoints on disk; ``params.methods``
    restricts them (``null`` = all). ``upstream`` only orders this node after the run's evaluations.
    """
    config = transfer_config(params)
    columns = ["source", "target", "attack", "accuracy", "n_images"]
    wanted = params.get("methods")
    names = order_methods([m for m in trained_models if wanted is None or m in wanted])
    if not params.get("enabled", True) or len(names) < 2:
        logger.info("Transfer attacks skipped (%s)", "disabled" if not params.get("enabled", True) else "fewer than two trained models")
        return pd.DataFrame(columns=columns)
    torch_device = resolve_device(device)
    models = {name: load_classifier(trained_models[name], torch_device) for name in names}
    n_test = len(test_set["labels"])
    n = min(int(params.get("n_images") or n_test), n_test)
    subset = index_set(test_set, stratified_indices(test_set["labels"], n, seed=int(params.get("subset_seed", 0))))
    data = to_device_set(subset, torch_device, name="test_set")
    logger.info("Transfer attacks among %s on %d test images", ", ".join(names), n)
    rows = transfer_matrix(models, data.float_images(), data.labels, config, attacks=params.get("attacks"))
    table = pd.DataFrame(rows)
    table["n_images"] = n
    return table[columns]
