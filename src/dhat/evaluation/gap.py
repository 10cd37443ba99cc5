"""Robust generalisation gap: robust accuracy on training images minus the same on test images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from dhat.evaluation.config import AttackSuiteConfig
from dhat.evaluation.inference import check_inputs, subset_indices
from dhat.evaluation.suite import evaluate_attacks

__all__ = ["robust_gap"]


def robust_gap(
    model: nn.Module,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    config: AttackSuiteConfig,
    attacks: Sequence[str] = ("pgd10", "autoattack"),
) -> dict[str, Any]:
    """Robust accuracy on training images minus robust accuracy on test images, per attack.

    Both subsets have the same size (``config.robust_gap_subset`` or the smaller
    split) and are the first entries of seeded permutations, so the train subset
    is the same every epoch and for every method. Pass *un-augmented* training images.

    Returns:
        ``{attack: {"train": %, "test": %, "gap": train - test}}`` plus ``n_images``.
    """
    if not attacks:
        raise ValueError("attacks must name at least one attack, e.g. ('pgd10', 'autoattack')")
    device, train_images, train_labels = check_inputs(model, train_images, train_labels, "train_")
    _, test_images, test_labels = check_inputs(model, test_images, test_labels, "test_")
    size = min(train_images.shape[0], test_images.shape[0])
    if config.robust_gap_subset is not None:
        size = min(size, config.robust_gap_subset)
    train_idx = subset_indices(train_images.shape[0], size, config.seed, device)
    test_idx = subset_indices(test_images.shape[0], size, config.seed + 1, device)
    on_train = evaluate_attacks(model, train_images[train_idx], train_labels[train_idx], config, attacks)
    on_test = evaluate_attacks(model, test_images[test_idx], test_labels[test_idx], config, attacks)
    gap: dict[str, Any] = {
        name: {"train": on_train[name], "test": on_test[name], "gap": on_train[name] - on_test[name]}
        for name in attacks
    }
    gap["n_images"] = size
    return gap

