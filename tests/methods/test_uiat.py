"""UIAT: its loss on fixed examples and its crafting of adversarial and inverse examples, by hand."""

import pytest
import torch

import dhat.methods.uiat as uiat_module
from dhat.methods import Batch, create_method
from tests.hand import ce, ce_logit_gradient, kl, one_hot, softmax
from tests.methods.helpers import assert_objective_equals_loss_on_crafted, fixed_inputs


def test_uiat_loss_matches_hand_computation(linear_model, monkeypatch):
    x, x_adv, x_inv = fixed_inputs()
    monkeypatch.setattr(uiat_module, "craft_adversarial_and_inverse", lambda model, batch, attack, inverse: (x_adv, x_inv))
    y = torch.tensor([2, 0])
    out = create_method("uiat", {"beta": 3.5}).objective(linear_model, Batch(x=x, y=y, indices=torch.arange(2)))
    z_adv, z_inv = linear_model(x_adv).tolist(), linear_model(x_inv).tolist()
    ce_adv = sum(ce(z_adv[i], int(y[i])) for i in range(2)) / 2
    kl_inv = sum(kl(softmax(z_adv[i]), softmax(z_inv[i])) for i in range(2)) / 2
    assert out.loss.item() == pytest.approx(ce_adv + 3.5 * kl_inv, rel=1e-5, abs=1e-6)
    assert out.parts["ce_adv"].item() == pytest.approx(ce_adv, rel=1e-5)
    assert out.parts["kl_inv"].item() == pytest.approx(kl_inv, rel=1e-3)
    assert torch.allclose(out.logits, linear_model(x_adv))


def test_craft_takes_one_hand_computed_step_each_way(linear_model):
    x = torch.rand(4, 1, 2, 2, generator=torch.Generator().manual_seed(2)) * 0.8 + 0.1
    y = torch.tensor([0, 1, 2, 1])
    step = {"steps": 1, "start": "none"}
    # A large attack step, so that the adversarial prediction steering the inverse step differs clearly from the clean one.
    method = create_method("uiat", {"attack": {**step, "eps": 0.3, "step_size": 0.3}, "inverse": {**step, "step_size": "4/255", "eps": "4/255"}})
    crafted = method.craft(linear_model, Batch(x=x, y=y, indices=torch.arange(4)))
    # Attack: one CE ascent step of 0.3.
    x_adv = (x + 0.3 * linear_model.input_gradient_by_hand(x, lambda i, z: ce_logit_gradient(z, int(y[i]))).sign()).clamp(0, 1)
    assert torch.allclose(crafted["x_adv"], x_adv)
    # Inverse: one descent step on CE + KL(p(x) || p(x')) - KL(p(x_adv) || p(x')). At x' = x the logit
    # gradient is (p - onehot) + (p - p_clean) - (p - p_adv) = p_adv - onehot.
    p_adv = [softmax(row) for row in linear_model(x_adv).tolist()]
    gradient = linear_model.input_gradient_by_hand(x, lambda i, z: [a - t for a, t in zip(p_adv[i], one_hot(int(y[i]), 3), strict=True)])
    assert torch.allclose(crafted["x_inv"], (x - 4 / 255 * gradient.sign()).clamp(0, 1))


def test_uiat_validation_names_the_field():
    assert create_method("uiat").params.beta == 3.5
    assert create_method("uiat").params.inverse.eps == pytest.approx(8 / 255)
    with pytest.raises(ValueError, match=r"uiat\.beta must be >= 0"):
        create_method("uiat", {"beta": -1.0})
    with pytest.raises(ValueError, match=r"uiat\.inverse\.steps"):
        create_method("uiat", {"inverse": {"steps": -2}})


def test_objective_equals_loss_on_crafted():
    assert_objective_equals_loss_on_crafted("uiat", {"attack": {"steps": 1}, "inverse": {"steps": 1}})
