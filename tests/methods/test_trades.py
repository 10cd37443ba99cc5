"""TRADES: its loss and attack against hand computation, crafting mode, training through the engine."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dhat.methods.trades as trades_module
from dhat.methods import Batch, create_method
from tests.hand import ce, kl, softmax
from tests.methods.helpers import (
    EPS,
    assert_objective_equals_loss_on_crafted,
    fixed_inputs,
    tiny_batch,
    tiny_model,
    train_tiny,
)

CLEAN = [[1.0, 2.0, 0.5], [0.2, -1.0, 3.0]]
ADV = [[0.5, 1.0, 1.5], [1.0, 0.0, 2.0]]
Y = [1, 2]


def _hand_terms():
    return [ce(CLEAN[i], Y[i]) for i in range(2)], [kl(softmax(CLEAN[i]), softmax(ADV[i])) for i in range(2)]


def test_trades_loss_on_fixed_logits_matches_hand_computation():
    z_clean = torch.tensor(CLEAN, requires_grad=True)
    z_adv = torch.tensor(ADV, requires_grad=True)
    loss, ce_mean, kl_mean = trades_module.trades_loss(z_clean, z_adv, torch.tensor(Y), 6.0)
    ce_hand, kl_hand = _hand_terms()
    assert loss.item() == pytest.approx(sum(ce_hand) / 2 + 6.0 * sum(kl_hand) / 2, rel=1e-6)
    assert ce_mean.item() == pytest.approx(sum(ce_hand) / 2, rel=1e-6)
    assert kl_mean.item() == pytest.approx(sum(kl_hand) / 2, rel=1e-6)
    # Nothing detached: the KL term also sends gradient into the clean logits.
    loss.backward()
    ce_only = torch.autograd.grad(F.cross_entropy(z_clean, torch.tensor(Y)), z_clean)[0]
    assert not torch.allclose(z_clean.grad, ce_only) and z_adv.grad.abs().sum() > 0


def test_trades_loss_with_per_sample_beta_plain_and_convex():
    z_clean, z_adv, y = torch.tensor(CLEAN), torch.tensor(ADV), torch.tensor(Y)
    ce_hand, kl_hand = _hand_terms()
    beta = torch.tensor([2.0, 5.0])
    per_sample, _, _ = trades_module.trades_loss(z_clean, z_adv, y, beta)
    assert per_sample.item() == pytest.approx((ce_hand[0] + 2 * kl_hand[0] + ce_hand[1] + 5 * kl_hand[1]) / 2, rel=1e-6)
    # CFA's convex form: (1 - b) CE + b KL with b = beta / (1 + beta).
    convex, _, _ = trades_module.trades_loss(z_clean, z_adv, y, beta, normalise=True)
    b = [2 / 3, 5 / 6]
    assert convex.item() == pytest.approx(sum((1 - b[i]) * ce_hand[i] + b[i] * kl_hand[i] for i in range(2)) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="one value per sample"):
        trades_module.trades_loss(z_clean, z_adv, y, torch.tensor([1.0, 2.0, 3.0]))


def test_trades_objective_on_fixed_examples(linear_model, monkeypatch):
    x, x_adv, _ = fixed_inputs()
    monkeypatch.setattr(trades_module, "craft_trades_examples", lambda model, x, attack, eps=None: x_adv)
    y = torch.tensor([2, 0])
    out = create_method("trades").objective(linear_model, Batch(x=x, y=y, indices=torch.arange(2)))
    z, z_adv = linear_model(x).tolist(), linear_model(x_adv).tolist()
    ce_clean = sum(ce(z[i], int(y[i])) for i in range(2)) / 2
    kl_adv = sum(kl(softmax(z[i]), softmax(z_adv[i])) for i in range(2)) / 2
    assert out.loss.item() == pytest.approx(ce_clean + 6.0 * kl_adv, rel=1e-5)
    assert out.parts["ce_clean"].item() == pytest.approx(ce_clean, rel=1e-5)
    assert torch.allclose(out.logits, linear_model(x_adv))  # train accuracy is measured on x'


def test_one_trades_attack_step_matches_hand_computation(linear_model):
    x = torch.rand(4, 1, 2, 2, generator=torch.Generator().manual_seed(3)) * 0.8 + 0.1
    method = create_method("trades", {"attack": {"steps": 1}})
    torch.manual_seed(7)
    start = (x + 0.001 * torch.randn_like(x)).clamp(0, 1)
    torch.manual_seed(7)
    x_adv = method.craft(linear_model, Batch(x=x, y=torch.zeros(4, dtype=torch.long), indices=torch.arange(4)))["x_adv"]
    # Ascent on KL(p(x) || p(x')): the logit gradient at the start is p(start) - p(x).
    p_clean = [softmax(row) for row in linear_model(x).tolist()]
    gradient = linear_model.input_gradient_by_hand(
        start, lambda i, z: [a - c for a, c in zip(softmax(z), p_clean[i], strict=True)]
    )
    expected = torch.min(torch.max(start + 2 / 255 * gradient.sign(), x - EPS), x + EPS).clamp(0, 1)
    assert torch.allclose(x_adv, expected, atol=1e-7)


class _ModeRecorder(nn.Module):
    """Wraps a model and records whether it was in train mode at each forward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.model.training)
        return self.model(x)


def test_trades_attack_starts_from_small_gaussian_in_eval_mode_and_stays_in_ball():
    model = _ModeRecorder(tiny_model()).train()
    batch = tiny_batch()
    method = create_method("trades", {"attack": {"steps": 0}})
    assert method.params.attack.start == "normal" and method.params.attack.bn_mode == "eval"
    torch.manual_seed(5)
    expected_start = (batch.x + 0.001 * torch.randn_like(batch.x)).clamp(0, 1)
    torch.manual_seed(5)
    start = method.craft(model, batch)["x_adv"]
    assert torch.allclose(start, expected_start, atol=1e-7)
    method = create_method("trades", {"attack": {"steps": 3}})
    model.modes.clear()
    torch.manual_seed(5)
    x_adv = method.craft(model, batch)["x_adv"]
    assert len(model.modes) == 4 and not any(model.modes)  # reference + 3 steps, all in eval mode
    assert model.training  # mode restored
    assert (x_adv - batch.x).abs().max() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - batch.x).abs().max() > 0.01  # the attack moved away from the start
    # A per-sample radius (CFA) bounds each sample separately.
    radii = torch.tensor([1.0, 2.0, 4.0, 8.0, 1.0, 0.0]) / 255
    x_cw = method.craft(model, Batch(**{**batch.__dict__, "attack_eps": radii}))["x_adv"]
    per_sample = (x_cw - batch.x).abs().flatten(1).max(dim=1).values
    assert torch.all(per_sample <= radii + 1e-6)
    assert torch.equal(x_cw[5], batch.x[5])


def test_trades_defaults_and_validation():
    method = create_method("trades")
    assert method.params.beta == 6.0 and not method.needs_masks
    with pytest.raises(ValueError, match=r"trades\.beta must be >= 0"):
        create_method("trades", {"beta": -1.0})


def test_objective_equals_loss_on_crafted():
    assert_objective_equals_loss_on_crafted("trades", {"attack": {"steps": 1}})


@pytest.mark.usefixtures("single_thread")
def test_training_logs_parts_that_add_up_to_the_loss():
    result = train_tiny(create_method("trades", {"attack": {"steps": 1}}))
    (row,) = result.history
    # Every batch's loss is ce_clean + 6 kl_adv, so the epoch averages obey the same relation.
    assert row["loss"] == pytest.approx(row["ce_clean"] + 6.0 * row["kl_adv"], rel=1e-5)
    assert row["kl_adv"] > 0
