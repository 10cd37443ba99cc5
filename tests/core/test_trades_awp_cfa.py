"""TRADES, AWP and CFA against hand-computed values; wrappers compose registered objectives."""

from __future__ import annotations

import copy
import math

from tests.hand import ce as _ce
from tests.hand import kl as _kl
from tests.hand import softmax as _softmax

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dhat.methods.awp as awp_module
import dhat.methods.cfa as cfa_module
import dhat.methods.trades as trades_module
from dhat.methods.base import Batch, EpochContext, create_method, method_class
from dhat.models import build_model
from dhat.tensors import DeviceImageSet
from dhat.training import TrainingConfig, train_model

EPS = 8 / 255





def _tiny_model(seed: int = 0, width: int = 2) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("small_cnn", num_classes=3, width=width)


def _tiny_batch(n: int = 6, seed: int = 1, epoch: int = 0, masks: bool = False) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 8, 8, generator=generator) * 0.8 + 0.1
    y = torch.arange(n) % 3
    m = torch.rand(n, 8, 8, generator=generator) if masks else None
    return Batch(x=x, y=y, indices=torch.arange(n), masks=m, epoch=epoch, num_epochs=20)


def _tiny_sets(n_train: int = 16, n_val: int = 6, masks: bool = False):
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(n_train + n_val) % 3
    images = torch.randint(0, 256, (n_train + n_val, 3, 8, 8), generator=generator, dtype=torch.uint8)
    m = torch.randint(0, 256, (n_train + n_val, 8, 8), generator=generator, dtype=torch.uint8) if masks else None
    train = DeviceImageSet(images[:n_train], labels[:n_train], None if m is None else m[:n_train])
    val = DeviceImageSet(images[n_train:], labels[n_train:])
    return train, val


# ----- TRADES ----------------------------------------------------------------------------------


def test_trades_loss_on_fixed_logits_matches_hand_computation():
    clean = [[1.0, 2.0, 0.5], [0.2, -1.0, 3.0]]
    adv = [[0.5, 1.0, 1.5], [1.0, 0.0, 2.0]]
    y = [1, 2]
    z_clean = torch.tensor(clean, requires_grad=True)
    z_adv = torch.tensor(adv, requires_grad=True)
    loss, ce, kl = trades_module.trades_loss(z_clean, z_adv, torch.tensor(y), 6.0)
    ce_hand = [_ce(clean[i], y[i]) for i in range(2)]
    kl_hand = [_kl(_softmax(clean[i]), _softmax(adv[i])) for i in range(2)]
    assert loss.item() == pytest.approx(sum(ce_hand) / 2 + 6.0 * sum(kl_hand) / 2, rel=1e-6)
    assert ce.item() == pytest.approx(sum(ce_hand) / 2, rel=1e-6)
    assert kl.item() == pytest.approx(sum(kl_hand) / 2, rel=1e-6)
    # Nothing detached: the KL term also sends gradient into the clean logits.
    loss.backward()
    ce_only = torch.autograd.grad(F.cross_entropy(z_clean, torch.tensor(y)), z_clean)[0]
    assert not torch.allclose(z_clean.grad, ce_only) and z_adv.grad.abs().sum() > 0
    # Per-sample beta, plain and in CFA's convex (normalised) form.
    beta = torch.tensor([2.0, 5.0])
    per_sample, _, _ = trades_module.trades_loss(z_clean, z_adv, torch.tensor(y), beta)
    assert per_sample.item() == pytest.approx((ce_hand[0] + 2 * kl_hand[0] + ce_hand[1] + 5 * kl_hand[1]) / 2, rel=1e-6)
    convex, _, _ = trades_module.trades_loss(z_clean, z_adv, torch.tensor(y), beta, normalise=True)
    b = [2 / 3, 5 / 6]
    expected = sum((1 - b[i]) * ce_hand[i] + b[i] * kl_hand[i] for i in range(2)) / 2
    assert convex.item() == pytest.approx(expected, rel=1e-6)


def test_trades_objective_on_fixed_examples(linear_model, monkeypatch):
    x = torch.tensor([[[[0.1, 0.9], [0.4, 0.6]]], [[[0.8, 0.2], [0.3, 0.7]]]])
    x_adv = (x + torch.tensor([1.0, -1.0, 1.0, -1.0]).view(1, 1, 2, 2) * 0.03).clamp(0, 1)
    monkeypatch.setattr(trades_module, "craft_trades_examples", lambda model, x, attack, eps=None: x_adv)
    y = torch.tensor([2, 0])
    out = create_method("trades").objective(linear_model, Batch(x=x, y=y, indices=torch.arange(2)))
    z, z_adv = linear_model(x).tolist(), linear_model(x_adv).tolist()
    ce = sum(_ce(z[i], int(y[i])) for i in range(2)) / 2
    kl = sum(_kl(_softmax(z[i]), _softmax(z_adv[i])) for i in range(2)) / 2
    assert out.loss.item() == pytest.approx(ce + 6.0 * kl, rel=1e-5)
    assert torch.allclose(out.logits, linear_model(x_adv))  # train accuracy is measured on x'


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
    model = _ModeRecorder(_tiny_model()).train()
    batch = _tiny_batch()
    method = create_method("trades", {"attack": {"steps": 0}})
    assert method.params.attack.start == "normal" and method.params.attack.bn_mode == "eval"
    torch.manual_seed(5)
    expected_start = (batch.x + 0.001 * torch.randn_like(batch.x)).clamp(0, 1)
    torch.manual_seed(5)
    start = method.craft(model, batch)["x_adv"]
    assert torch.allclose(start, expected_start, atol=1e-7)
    assert 0 < (start - batch.x).abs().max() < 0.006
    method = create_method("trades", {"attack": {"steps": 3}})
    model.modes.clear()
    x_adv = method.craft(model, batch)["x_adv"]
    assert model.modes and not any(model.modes)  # every forward while crafting ran in eval mode
    assert model.training  # mode restored
    assert (x_adv - batch.x).abs().max() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - batch.x).abs().max() > 0.01  # the attack moved away from the start
    # A per-sample radius (CFA) bounds each sample separately.
    radii = torch.tensor([1.0, 2.0, 4.0, 8.0, 1.0, 0.0]) / 255
    x_cw = method.craft(model, Batch(**{**batch.__dict__, "attack_eps": radii}))["x_adv"]
    per_sample = (x_cw - batch.x).abs().flatten(1).max(dim=1).values
    assert torch.all(per_sample <= radii + 1e-6)


@pytest.mark.parametrize("name", ["pgd_at", "uiat", "trades", "dhat"])
def test_objective_equals_loss_on_crafted(name):
    model = _tiny_model().train()
    batch = _tiny_batch(masks=True)
    params = {"attack": {"steps": 1}, **({"inverse": {"steps": 1}} if name in ("uiat", "dhat") else {})}
    method = create_method(name, params)
    torch.manual_seed(3)
    full = method.objective(copy.deepcopy(model), batch).loss
    torch.manual_seed(3)
    twin = copy.deepcopy(model)
    split = method.loss_on(twin, batch, method.craft(twin, batch)).loss
    assert full.item() == pytest.approx(split.item(), rel=1e-6)


# ----- AWP -------------------------------------------------------------------------------------


def _grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad(F.cross_entropy(model(x), y), params)


def test_awp_step_equals_plain_step_from_the_perturbed_point_and_restores_weights():
    gamma, lr = 0.1, 0.05
    model = _tiny_model().train()
    batch = _tiny_batch()
    x_adv = (batch.x + 0.02).clamp(0, 1)
    method = create_method("pgd_at_awp", {"gamma": gamma})
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
    model = _tiny_model()
    proxy = copy.deepcopy(model)
    with torch.no_grad():
        for p in proxy.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    gamma = 0.01
    directions = awp_module.weight_perturbation(model, proxy)
    weights = dict(model.named_parameters())
    assert set(directions) == {n for n, p in weights.items() if p.ndim >= 2}  # conv + linear weights only
    for name, v in directions.items():
        assert (gamma * v).norm().item() == pytest.approx(gamma * weights[name].norm().item(), rel=1e-5)
        d = dict(proxy.named_parameters())[name] - weights[name]
        assert F.cosine_similarity(v.flatten(), d.flatten(), dim=0).item() == pytest.approx(1.0, abs=1e-5)
    # The same holds for the perturbation computed from a real proxy step.
    method = create_method("pgd_at_awp", {"base": {"attack": {"steps": 1}}})
    batch = _tiny_batch()
    real = method.perturbation(model.train(), batch, method.base.craft(model, batch))
    for name, v in real.items():
        assert (0.01 * v).norm().item() == pytest.approx(0.01 * weights[name].norm().item(), rel=1e-5)


def test_awp_warmup_skips_the_perturbation(monkeypatch):
    method = create_method("trades_awp", {"base": {"attack": {"steps": 1}}})
    assert method.params.gamma == 0.005 and method.params.warmup_epochs == 10
    calls = []

    def no_perturbation(model, batch, crafted):
        calls.append(batch.epoch)
        return {}

    monkeypatch.setattr(method, "perturbation", no_perturbation)
    model = _tiny_model().train()
    twin = copy.deepcopy(model)
    torch.manual_seed(0)
    method.train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), _tiny_batch(epoch=9))
    assert calls == []
    torch.manual_seed(0)  # a plain TRADES step from the same state and RNG gives the same weights
    plain_trades = create_method("trades", {"attack": {"steps": 1}})
    plain_trades.train_step(twin, torch.optim.SGD(twin.parameters(), lr=0.1), _tiny_batch(epoch=9))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters(), strict=True))
    method.train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), _tiny_batch(epoch=10))
    assert calls == [10]


def test_awp_and_cfa_registry_entries_masks_and_validation():
    for name in ("dhat_awp", "dhat_cfa"):
        assert method_class(name).needs_masks and create_method(name).needs_masks
    for name in ("trades", "pgd_at_awp", "trades_awp", "cfa", "cfa_trades"):
        assert not create_method(name).needs_masks
    assert create_method("pgd_at_awp").params.gamma == 0.01 and create_method("pgd_at_awp").params.warmup_epochs == 0
    assert create_method("dhat_awp").params.gamma == 0.01 and create_method("dhat_awp").params.proxy_lr == 0.01
    assert isinstance(create_method("dhat_awp").base, method_class("dhat"))
    assert isinstance(create_method("dhat_cfa").base, method_class("dhat"))
    cfa = create_method("cfa_trades")
    p = cfa.params
    assert (p.lambda1, p.lambda2, p.fawa_decay, p.fawa_threshold, p.ccm_start_epoch) == (0.5, 0.5, 0.88, 0.2, 10)
    assert cfa.describe()["base_method"] == "trades" and cfa.describe()["params"]["base"]["beta"] == 6.0
    with pytest.raises(ValueError, match=r"trades_awp\.gamma"):
        create_method("trades_awp", {"gamma": -1})
    with pytest.raises(ValueError, match=r"dhat_awp\.base\.omega"):
        create_method("dhat_awp", {"base": {"omega": 2}})
    with pytest.raises(ValueError, match=r"cfa\.base\.atack"):
        create_method("cfa", {"base": {"atack": {}}})
    with pytest.raises(ValueError, match=r"cfa_trades\.lambda2"):
        create_method("cfa_trades", {"lambda2": -0.5})
    with pytest.raises(ValueError, match="mask_precomputation"):
        model = _tiny_model()
        create_method("dhat_awp").train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), _tiny_batch())


# ----- CFA -------------------------------------------------------------------------------------


def _context(epoch: int, model: nn.Module, val=None) -> EpochContext:
    train, default_val = _tiny_sets()
    return EpochContext(epoch, 20, model, train, default_val if val is None else val)


def _fake_epoch(method, model, epoch: int, monkeypatch, worst: float = 0.0) -> None:
    """One epoch of fake adversarial logits: class 0 right 3/4, class 1 right 1/2, class 2 right 0/4."""
    monkeypatch.setattr(method, "worst_class_validation_accuracy", lambda *a: worst)
    method.on_epoch_start(_context(epoch, model))
    y = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    predicted = torch.tensor([0, 0, 0, 1, 1, 0, 0, 1, 1, 0])
    method.record(F.one_hot(predicted, 3).float() * 5.0, y)
    method.on_epoch_end(_context(epoch, model))


def test_cfa_class_wise_radius_follows_previous_epoch_class_accuracy(monkeypatch):
    method = create_method("cfa", {"base": {"attack": {"steps": 1}}})
    model = _tiny_model()
    _fake_epoch(method, model, epoch=9, monkeypatch=monkeypatch)
    assert method.class_accuracy.tolist() == pytest.approx([0.75, 0.5, 0.0])
    batch = _tiny_batch(epoch=9)
    assert method.calibrate(batch).attack_eps is None  # before ccm_start_epoch: eps as usual
    batch = _tiny_batch(epoch=10)
    expected = {0: (0.5 + 0.75) * EPS, 1: (0.5 + 0.5) * EPS, 2: (0.5 + 0.0) * EPS}
    radii = method.calibrate(batch).attack_eps
    assert radii.tolist() == pytest.approx([expected[int(c)] for c in batch.y])
    # The radius reaches the base objective's crafting, and train_step records the new epoch.
    seen = []

    def fake_craft(model, batch):
        seen.append(batch.attack_eps)
        return {"x_adv": batch.x}

    method.base.craft = fake_craft
    method.on_epoch_start(_context(10, model))
    method.train_step(model.train(), torch.optim.SGD(model.parameters(), lr=0.0), batch)
    assert torch.allclose(seen[0], radii)
    assert int(method._count.sum()) == len(batch.y)


def test_cfa_class_absent_from_last_epoch_keeps_base_radius(monkeypatch):
    method = create_method("cfa", {"ccm_start_epoch": 0})
    monkeypatch.setattr(method, "worst_class_validation_accuracy", lambda *a: 0.0)
    model = _tiny_model()
    method.on_epoch_start(_context(0, model))
    method.record(torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 3.0]]), torch.tensor([0, 1]))
    method.on_epoch_end(_context(0, model))
    assert method.class_radii().tolist() == pytest.approx([1.5 * EPS, 0.5 * EPS, EPS])


def test_cfa_trades_ccr_weight_formula(linear_model, monkeypatch):
    x = torch.tensor([[[[0.1, 0.9], [0.4, 0.6]]], [[[0.8, 0.2], [0.3, 0.7]]], [[[0.5, 0.5], [0.2, 0.1]]]])
    x_adv = (x + torch.tensor([1.0, -1.0, 1.0, -1.0]).view(1, 1, 2, 2) * 0.03).clamp(0, 1)
    monkeypatch.setattr(trades_module, "craft_trades_examples", lambda model, x, attack, eps=None: x_adv)
    y = torch.tensor([0, 1, 2])
    method = create_method("cfa_trades")
    z, z_adv = linear_model(x).tolist(), linear_model(x_adv).tolist()
    ce = [_ce(z[i], int(y[i])) for i in range(3)]
    kl = [_kl(_softmax(z[i]), _softmax(z_adv[i])) for i in range(3)]
    # Before the class-wise phase: the convex form with b = beta / (1 + beta) = 6/7.
    out = method.objective(linear_model, Batch(x=x, y=y, indices=torch.arange(3), epoch=0))
    assert out.loss.item() == pytest.approx(sum((1 / 7) * ce[i] + (6 / 7) * kl[i] for i in range(3)) / 3, rel=1e-5)
    _fake_epoch(method, linear_model, epoch=9, monkeypatch=monkeypatch)
    r = [0.75, 0.5, 0.0]
    b = [(0.5 + rc) * 6 / (1 + (0.5 + rc) * 6) for rc in r]
    assert b == pytest.approx([7.5 / 8.5, 6 / 7, 3 / 4])
    out = method.objective(linear_model, Batch(x=x, y=y, indices=torch.arange(3), epoch=10))
    expected = sum((1 - b[i]) * ce[i] + b[i] * kl[i] for i in range(3)) / 3
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    # With ccr off the weight stays 6/7 even in the class-wise phase.
    off = create_method("cfa_trades", {"ccr": False})
    off.class_accuracy = method.class_accuracy
    out = off.objective(linear_model, Batch(x=x, y=y, indices=torch.arange(3), epoch=10))
    assert out.loss.item() == pytest.approx(sum((1 / 7) * ce[i] + (6 / 7) * kl[i] for i in range(3)) / 3, rel=1e-5)


def test_fawa_updates_only_above_threshold_and_is_an_ema(monkeypatch):
    method = create_method("cfa")
    model = _tiny_model()
    worst = iter([0.1, 0.3, 0.19, 0.25])
    monkeypatch.setattr(method, "worst_class_validation_accuracy", lambda *a: next(worst))

    def shift(scale):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(scale)

    method.on_epoch_start(_context(0, model))
    method.on_epoch_end(_context(0, model))  # 0.1 < 0.2: no average yet
    assert method.average is None and method.evaluation_model(model) is model
    shift(0.5)
    method.on_epoch_end(_context(1, model))  # 0.3: the average starts as a copy
    first = {k: v.clone() for k, v in model.state_dict().items()}
    assert method.evaluation_model(model) is method.average and method.average is not model
    assert all(torch.equal(method.average.state_dict()[k], v) for k, v in first.items())
    shift(-1.0)
    method.on_epoch_end(_context(2, model))  # 0.19: unchanged
    assert all(torch.equal(method.average.state_dict()[k], v) for k, v in first.items())
    with torch.no_grad():
        model.backbone.stage1[1].running_mean.fill_(2.0)
        model.backbone.stage1[1].num_batches_tracked.fill_(7)
    new = {k: v.clone() for k, v in model.state_dict().items()}
    method.on_epoch_end(_context(3, model))  # 0.25: EMA step
    averaged = method.evaluation_model(model).state_dict()
    for key, value in new.items():
        if value.is_floating_point():
            assert torch.allclose(averaged[key], 0.88 * first[key] + 0.12 * value, atol=1e-6), key
        else:
            assert torch.equal(averaged[key], value), key
    assert method.fawa_updates == 2


def test_class_robust_accuracy_per_class_by_hand(linear_model):
    generator = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (12, 1, 2, 2), generator=generator, dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2] * 4)
    data = DeviceImageSet(images, labels)
    attack = create_method("cfa", {"validation": {"eps": 0.0, "steps": 0}}).params.validation
    accuracy = cfa_module.class_robust_accuracy(linear_model, data, attack, batch_size=5, num_classes=3)
    predicted = linear_model(images.float() / 255).argmax(dim=1).tolist()
    for c in range(3):
        rows = [i for i in range(12) if int(labels[i]) == c]
        assert accuracy[c].item() == pytest.approx(sum(predicted[i] == c for i in rows) / len(rows))
    method = create_method("cfa", {"validation": {"eps": 0.0, "steps": 0}})
    assert method.worst_class_validation_accuracy(linear_model, data, 3) == pytest.approx(float(accuracy.min()))


# ----- smoke: every new registry name trains through the engine ----------------------------------


@pytest.mark.parametrize("name", ["trades", "pgd_at_awp", "trades_awp", "dhat_awp", "cfa", "cfa_trades", "dhat_cfa"])
def test_train_model_smoke(name):
    torch.set_num_threads(1)
    train, val = _tiny_sets(masks=method_class(name).needs_masks)
    base = {"attack": {"steps": 1}}
    if name.startswith("dhat"):
        base["inverse"] = {"steps": 1}
    if name == "trades":
        params = base
    elif name.endswith("awp"):
        params = {"base": base, "warmup_epochs": 0}
    else:  # CFA: two epochs so that the class-wise radii and FAWA both run
        params = {"base": base, "ccm_start_epoch": 1, "fawa_threshold": 0.0, "validation": {"steps": 1}}
    method = create_method(name, params)
    epochs = 2 if "cfa" in name else 1
    config = TrainingConfig.from_dict(
        {"epochs": epochs, "batch_size": 8, "lr": 0.05, "crop_padding": 1, "progress": False, "val_steps": 1}
    )
    result = train_model(_tiny_model(seed=4), method, train, val, config)
    assert len(result.history) == epochs and all(math.isfinite(row["loss"]) for row in result.history)
    if "cfa" in name:
        assert method.fawa_updates == 2 and method.class_accuracy is not None
        average = method.average.state_dict()
        assert all(torch.equal(result.last_state[k], average[k].cpu()) for k in average)
