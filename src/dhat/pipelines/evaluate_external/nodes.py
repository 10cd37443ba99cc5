"""Nodes of the ``evaluate_external`` pipeline: load an outside model, score it with the protocol."""

from __future__ import annotations

from typing import Any

import numpy as np

from dhat.evaluation.protocol import evaluate_checkpoint
from dhat.external import load_external_model


def load_external(name: str, entry: dict[str, Any], dataset_info: dict[str, Any]) -> dict[str, Any]:
    """The model of ``external_models.<name>`` as a project checkpoint (its logits: the data's classes)."""
    return load_external_model(name, entry, dataset_info)


def evaluate_external(model_best: dict[str, Any], train_set: dict[str, np.ndarray], test_set: dict[str, np.ndarray],
                      test_variants: dict[str, dict[str, np.ndarray]], dataset_info: dict[str, Any],
                      evaluation: dict[str, Any], device: str) -> tuple[dict[str, Any], dict[str, np.ndarray],
                                                                        dict[str, np.ndarray]]:
    """:func:`~dhat.evaluation.protocol.evaluate_checkpoint` on the outside model (it has no last checkpoint)."""
    return tuple(evaluate_checkpoint(model_best, None, train_set, test_set, test_variants, dataset_info, evaluation,
                                     device))
