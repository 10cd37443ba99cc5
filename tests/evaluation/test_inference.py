"""Input checks, eval mode and random state around every evaluation."""

from __future__ import annotations

import pytest
import torch

from dhat.evaluation import accuracy, evaluate_attacks, predict
from tests.evaluation.helpers import ConstantModel, make_config, small_cnn_setup

pytestmark = pytest.mark.usefixtures("single_thread")


def test_bad_inputs_raise_clear_errors() -> None:
    model = ConstantModel(torch.tensor([1.0, 0.0]))
    config = make_config()
    with pytest.raises(ValueError, match=r"images must be pixel-scale values in \[0, 1\]"):
        evaluate_attacks(model, torch.full((2, 1, 2, 2), 2.0), torch.zeros(2, dtype=torch.long), config)
    with pytest.raises(ValueError, match="labels must be an int64"):
        evaluate_attacks(model, torch.rand(2, 1, 2, 2), torch.zeros(2, dtype=torch.int32), config)
    with pytest.raises(ValueError, match="labels has 3 entries"):
        evaluate_attacks(model, torch.rand(2, 1, 2, 2), torch.zeros(3, dtype=torch.long), config)


# ---------------------------------------------------------------------------
# Hand-computed attacks on a linear model
# ---------------------------------------------------------------------------


def test_evaluation_restores_mode_and_random_state() -> None:
    model, x, y = small_cnn_setup(4)
    model.train()
    running_mean = model.backbone.stage1[1].running_mean.clone()
    torch.manual_seed(5)
    expected_next = torch.rand(3)
    torch.manual_seed(5)
    evaluate_attacks(model, x, y, make_config(pgd_steps=(2,), cw_steps=2), attacks=["fgsm", "pgd2", "cw"])
    assert model.training
    torch.testing.assert_close(model.backbone.stage1[1].running_mean, running_mean)
    torch.testing.assert_close(torch.rand(3), expected_next)


def test_predict_and_accuracy_use_eval_mode() -> None:
    model, x, y = small_cnn_setup(7)
    model.train()
    logits = predict(model, x, batch_size=3)
    assert model.training
    with torch.no_grad():
        expected = model.eval()(x)
    torch.testing.assert_close(logits, expected)
    assert accuracy(model, x, y, batch_size=3) == pytest.approx(100.0 * (expected.argmax(1) == y).float().mean().item())


# ---------------------------------------------------------------------------
# A model that ignores its input
# ---------------------------------------------------------------------------
