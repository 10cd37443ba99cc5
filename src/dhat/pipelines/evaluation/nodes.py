"""Node of the ``evaluation`` pipeline (one namespace per method): the protocol of :mod:`dhat.evaluation.protocol`."""

from __future__ import annotations

from typing import Any

import numpy as np

from dhat.evaluation.protocol import evaluate_checkpoint


def evaluate_method(
    model_best: dict[str, Any],
    model_last: dict[str, Any],
    train_set: dict[str, np.ndarray],
    test_set: dict[str, np.ndarray],
    test_variants: dict[str, dict[str, np.ndarray]],
    dataset_info: dict[str, Any],
    evaluation: dict[str, Any],
    device: str,
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The method's selected and last checkpoints through :func:`~dhat.evaluation.protocol.evaluate_checkpoint`:
    its metrics, the Grad-CAM maps of a few test images and the per-image record."""
    return tuple(evaluate_checkpoint(model_best, model_last, train_set, test_set, test_variants, dataset_info,
                                     evaluation, device))
