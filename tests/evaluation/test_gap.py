"""Robust generalisation gap."""

from __future__ import annotations

import pytest
import torch

from dhat.evaluation import robust_gap
from tests.evaluation.helpers import MeanThresholdModel, brightness_data, make_config

pytestmark = pytest.mark.usefixtures("single_thread")


def test_robust_gap_is_train_minus_test() -> None:
    model = MeanThresholdModel(quantise=False)
    # Train images lie 0.2 from the boundary (robust at eps 0.05); half the test images lie 0.02 from it.
    train_x, train_y = brightness_data(10, distance=0.2, seed=2)
    near_x, near_y = brightness_data(4, distance=0.02, seed=3)
    far_x, far_y = brightness_data(4, distance=0.2, seed=4)
    test_x, test_y = torch.cat([near_x, far_x]), torch.cat([near_y, far_y])
    config = make_config(eps=0.05, step_size=0.02, batch_size=8, autoattack_version="custom",
                         autoattack_attacks=("apgd-ce", "square"), autoattack_n_iter=10, autoattack_square_queries=50)
    gap = robust_gap(model, train_x, train_y, test_x, test_y, config, attacks=("pgd10", "autoattack"))
    assert gap["n_images"] == 8  # same size on both sides: the smaller split
    for name in ("pgd10", "autoattack"):
        assert gap[name]["train"] == 100.0
        assert gap[name]["test"] == 50.0
        assert gap[name]["gap"] == 50.0


# ---------------------------------------------------------------------------
# Background bias
# ---------------------------------------------------------------------------
