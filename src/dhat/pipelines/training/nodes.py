"""Node of the ``training`` pipeline (one namespace per method, see :mod:`dhat.methods.catalog`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from dhat.engine.fitting import fit
from dhat.stats.sweeps import with_method_params


def train_method(
    train_set: dict[str, np.ndarray],
    val_set: dict[str, np.ndarray],
    attention_masks: dict[str, np.ndarray],
    dataset_info: dict[str, Any],
    method: dict[str, Any],
    model: dict[str, Any],
    training: dict[str, Any],
    device: str,
    training_state: str,
) -> tuple[dict[str, Any], dict[str, Any], pd.DataFrame]:
    """Train the namespace's method (``params:<namespace>.method``) with the shared recipe.

    ``training_state`` is the file of the resumable training state (beside the method's
    models): a rerun after a crash continues from its last completed epoch, and
    :class:`dhat.hooks.TrainingStateCleanupHook` removes it once the outputs are saved.
    Returns the checkpoint selected on the validation split, the last one and the history.
    """
    return fit(train_set, val_set, attention_masks, dataset_info, method, model, training, device,
               state_path=training_state)


def train_method_with(inputs: Mapping[str, Any], *, seed: int | None = None,
                      method_params: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any], pd.DataFrame]:
    """:func:`train_method` on its named node inputs with the training seed and/or method hyper-parameters replaced.

    For the units that train one configured method several ways (study seeds, sensitivity
    values, mask sources) without a YAML section per variant; ``inputs`` are the keywords of
    :func:`train_method` (the nodes take them as :data:`~dhat.pipelines.training.pipeline.TRAINING_INPUTS`).
    """
    values = dict(inputs)
    if seed is not None:
        values["training"] = {**values["training"], "seed": seed}
    if method_params:
        values["method"] = with_method_params(values["method"], **method_params)
    return train_method(**values)
