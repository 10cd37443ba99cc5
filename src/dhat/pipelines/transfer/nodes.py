"""Node of the ``transfer`` pipeline: black-box transfer between the trained models (paper table 6)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from dhat.checkpoints import load_classifier
from dhat.config import resolve_device
from dhat.data.splits import index_set, stratified_indices
from dhat.evaluation import transfer_matrix
from dhat.evaluation.sections import TransferSettings
from dhat.methods.catalog import order_methods
from dhat.tensors import to_device_set

logger = logging.getLogger(__name__)


def transfer_attacks(
    trained_models: dict[str, dict[str, Any]],
    test_set: dict[str, np.ndarray],
    params: dict[str, Any],
    device: str,
) -> pd.DataFrame:
    """Craft examples on every trained model (source) and score them on every other (target).

    ``trained_models``: ``{method: selected checkpoint}`` (this run's in ``train_eval``, the
    latest on disk in the ``transfer`` pipeline); ``params.methods`` restricts them (``null`` = all).
    """
    settings = TransferSettings.from_dict(params)
    columns = ["source", "target", "attack", "accuracy", "n_images"]
    wanted = settings.methods
    names = order_methods([m for m in trained_models if wanted is None or m in wanted])
    if not settings.enabled or len(names) < 2:
        logger.info("Transfer attacks skipped (%s)", "disabled" if not settings.enabled else "fewer than two trained models")
        return pd.DataFrame(columns=columns)
    torch_device = resolve_device(device)
    models = {name: load_classifier(trained_models[name], torch_device) for name in names}
    n_test = len(test_set["labels"])
    n = min(settings.n_images or n_test, n_test)
    subset = index_set(test_set, stratified_indices(test_set["labels"], n, seed=settings.subset_seed))
    data = to_device_set(subset, torch_device, name="test_set", bound="transfer.n_images")
    logger.info("Transfer attacks among %s on %d test images", ", ".join(names), n)
    rows = transfer_matrix(models, data.float_images(), data.labels, settings.suite, attacks=settings.attack_list())
    table = pd.DataFrame(rows)
    table["n_images"] = n
    return table[columns]
