"""Adversarial weight perturbation: the step against an independent computation, warm-up, registry entries."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dhat.methods.awp as awp_module
from dhat.methods import create_method, method_class
from tests.methods.helpers import configured, tiny_batch, tiny_model, train_tiny


def _grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad(F.cross_entropy(model(x), y), params)


def test_awp_step_equals_plain_step_from_the_perturbed_point_and_restores_weights():
    gamma, lr = 0.1, 0.05
    model = tiny_model().train()
    batch = tiny_batch()
    x_adv = (batch.x + 0.02).clamp(0, 1)
    method = configured("pgd_at_awp", {"gamma": gamma})
    method.base.craft = lambda m, b: {"x_adv": x_adv}  # fixed examples, so the step is computable by hand

    # Independent computation. The proxy step w + proxy_lr * grad CE only sets the direction
    # d, and v = ||w|| d / ||d|| = ||w|| g / ||g|| layer by layer.
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    reference = copy.deepcopy(model)
    names = [n for n, p in reference.named_parameters() if p.ndim >= 2 and n.endswith("weight")]
    assert "fc.weight" in names and all("bn" not in n and not n.endswith("bias") for n in names)
    params = dict(reference.named_parameters())
    grads = torch.autograd.grad(F.cross_entropy(reference(x_adv), batch.y), [params[n] for n in names])
    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        for n, g in zip(names, grads, strict=True):
            dict(perturbed.named_parameters())[n].add_(gamma * params[n].norm() * g / g.norm())
    p_params = dict(perturbed.named_parameters())
    p_grads = dict(zip(p_params, _grads(perturbed, x_adv, batch.y, list(p_params.values())), strict=True))
    plain = copy.deepcopy(model)
    plain_params = dict(plain.named_parameters())
    plain_grads = dict(zip(names, _grads(plain, x_adv, batch.y, [plain_params[n] for n in names]), strict=True))

    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.0, weight_decay=0.0)
    method.train_step(model, optimizer, batch)
    for name, param in model.named_parameters():
        expected = before[name] - lr * p_grads[name]
        assert torch.allclose(param, expected, atol=1e-6), name
    # The perturbation mattered: the step differs from a plain step at the unperturbed weights.
    assert any(not torch.allclose(p_grads[n], plain_grads[n], atol=1e-4) for n in names)

    # With a zero learning rate the weights come back to where they were.
    frozen = {k: v.detach().clone() for k, v in model.named_parameters()}
    method.train_step(model, torch.optim.SGD(model.parameters(), lr=0.0), batch)
    for name, param in model.named_parameters():
        assert torch.allclose(param, frozen[name], atol=1e-7), name


def test_awp_perturbation_norm_per_layer_is_gamma_times_weight_norm():
    model = tiny_model()
    proxy = copy.deepcopy(model)
    with torch.no_grad():
        for p in proxy.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    directions = awp_module.weight_perturbation(model, proxy)
    weights = dict(model.named_parameters())
    assert set(directions) == {n for n, p in weights.items() if p.ndim >= 2}  # conv + linear weights only
    for name, v in directions.items():
        assert v.norm().item() == pytest.approx(weights[name].norm().item(), rel=1e-5)
        d = dict(proxy.named_parameters())[name] - weights[name]
        assert F.cosine_similarity(v.flatten(), d.flatten(), dim=0).item() == pytest.approx(1.0, abs=1e-5)


def test_awp_perturbation_from_a_proxy_step_ascends_the_base_loss():
    model = tiny_model().train()
    batch = tiny_batch()
    method = configured("pgd_at_awp", {"base": {"attack": {"steps": 1}}})
    torch.manual_seed(0)
    crafted = method.base.craft(model, batch)
    before = copy.deepcopy(model.state_dict())
    real = method.perturbation(model, batch, crafted)
    # The proxy takes one plain SGD step on -loss, so each direction is +grad of the loss, rescaled to ||w||.
    twin = copy.deepcopy(model)
    twin.load_state_dict(before)
    params = dict(twin.named_parameters())
    grads = torch.autograd.grad(method.base.loss_on(twin, batch, crafted).loss, [params[n] for n in real])
    for (name, v), g in zip(real.items(), grads, strict=True):
        assert v.norm().item() == pytest.approx(params[name].norm().item(), rel=1e-5)
        assert F.cosine_similarity(v.flatten(), g.flatten(), dim=0).item() == pytest.approx(1.0, abs=1e-4), name
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model itself is untouched


def test_awp_warmup_skips_the_perturbation(monkeypatch):
    method = configured("trades_awp", {"base": {"attack": {"steps": 1}}})
    assert method.params.gamma == 0.005 and method.params.warmup_epochs == 10
    calls = []

    def no_perturbation(model, batch, crafted):
        calls.append(batch.epoch)
        return {}

    monkeypatch.setattr(method, "perturbation", no_perturbation)
    model = tiny_model().train()
    twin = copy.deepcopy(model)
    torch.manual_seed(0)
    method.train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), tiny_batch(epoch=9))
    assert calls == []
    torch.manual_seed(0)  # a plain TRADES step from the same state and RNG gives the same weights
    plain_trades = create_method("trades", {"attack": {"steps": 1}})
    plain_trades.train_step(twin, torch.optim.SGD(twin.parameters(), lr=0.1), tiny_batch(epoch=9))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters(), strict=True))
    method.train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), tiny_batch(epoch=10))
    assert calls == [10]


def test_awp_registry_entries_masks_and_validation():
    assert configured("dhat_awp").needs_masks
    for name in ("pgd_at_awp", "trades_awp"):
        assert not configured(name).needs_masks
    assert configured("pgd_at_awp").params.gamma == 0.01 and configured("pgd_at_awp").params.warmup_epochs == 0
    assert configured("dhat_awp").params.gamma == 0.01 and configured("dhat_awp").params.proxy_lr == 0.01
    assert isinstance(configured("dhat_awp").base, method_class("dhat"))
    description = configured("trades_awp", {"base": {"beta": 3.0}}).describe()
    assert description["base_method"] == "trades" and description["params"]["base"]["beta"] == 3.0
    with pytest.raises(ValueError, match=r"trades_awp\.gamma"):
        configured("trades_awp", {"gamma": -1})
    with pytest.raises(ValueError, match=r"dhat_awp\.base\.omega"):
        configured("dhat_awp", {"base": {"omega": 2}})
    model = tiny_model()
    with pytest.raises(ValueError, match="mask_precomputation"):
        configured("dhat_awp").train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), tiny_batch())


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize(("name", "weights"), [("pgd_at_awp", {}), ("trades_awp", {"kl_adv": 6.0}), ("dhat_awp", {"dhlr": 1.0, "floe": 1.0})])
def test_training_logs_parts_that_add_up_to_the_loss(name, weights):
    base = {"attack": {"steps": 1}, **({"inverse": {"steps": 1}} if name == "dhat_awp" else {})}
    result = train_tiny(configured(name, {"base": base, "warmup_epochs": 0}), masks=name == "dhat_awp")
    (row,) = result.history
    # The logged loss is the base loss at the perturbed weights: its parts still add up to it.
    first = "ce_clean" if name == "trades_awp" else "ce_adv"
    assert row["loss"] == pytest.approx(row[first] + sum(w * row[k] for k, w in weights.items()), rel=1e-5)
