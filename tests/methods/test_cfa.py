"""CFA: class-wise radii (CCM), class-wise TRADES weights (CCR) and FAWA, against hand computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dhat.methods.cfa as cfa_module
import dhat.methods.trades as trades_module
from dhat.methods import Batch, EpochContext, create_method, method_class
from dhat.tensors import DeviceImageSet
from tests.hand import ce, ce_logit_gradient, kl, softmax
from tests.methods.helpers import EPS, configured, fixed_inputs, tiny_batch, tiny_model, tiny_sets, train_tiny


def _context(epoch: int, model: nn.Module) -> EpochContext:
    train, val = tiny_sets()
    return EpochContext(epoch, 20, model, train, val)


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
    model = tiny_model()
    _fake_epoch(method, model, epoch=9, monkeypatch=monkeypatch)
    assert method.class_accuracy.tolist() == pytest.approx([0.75, 0.5, 0.0])
    assert method.calibrate(tiny_batch(epoch=9)).attack_eps is None  # before ccm_start_epoch: eps as usual
    batch = tiny_batch(epoch=10)
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
    assert method._count.tolist() == [2, 2, 2]


def test_cfa_class_absent_from_last_epoch_keeps_base_radius(monkeypatch):
    method = create_method("cfa", {"ccm_start_epoch": 0})
    monkeypatch.setattr(method, "worst_class_validation_accuracy", lambda *a: 0.0)
    model = tiny_model()
    method.on_epoch_start(_context(0, model))
    method.record(torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 3.0]]), torch.tensor([0, 1]))
    method.on_epoch_end(_context(0, model))
    assert method.class_radii().tolist() == pytest.approx([1.5 * EPS, 0.5 * EPS, EPS])


def test_cfa_trades_ccr_weight_formula(linear_model, monkeypatch):
    x, x_adv, _ = fixed_inputs(3)
    monkeypatch.setattr(trades_module, "craft_trades_examples", lambda model, x, attack, eps=None: x_adv)
    y = torch.tensor([0, 1, 2])
    method = configured("cfa_trades")
    z, z_adv = linear_model(x).tolist(), linear_model(x_adv).tolist()
    ce_clean = [ce(z[i], int(y[i])) for i in range(3)]
    kl_adv = [kl(softmax(z[i]), softmax(z_adv[i])) for i in range(3)]
    # Before the class-wise phase: the convex form with b = beta / (1 + beta) = 6/7.
    out = method.objective(linear_model, Batch(x=x, y=y, indices=torch.arange(3), epoch=0))
    assert out.loss.item() == pytest.approx(sum((1 / 7) * ce_clean[i] + (6 / 7) * kl_adv[i] for i in range(3)) / 3, rel=1e-5)
    _fake_epoch(method, linear_model, epoch=9, monkeypatch=monkeypatch)
    # beta_c = (lambda2 + r_c) * beta with r = (0.75, 0.5, 0) and lambda2 = 0.5, beta = 6.
    assert method.class_trades_beta().tolist() == pytest.approx([7.5, 6.0, 3.0])
    b = [7.5 / 8.5, 6 / 7, 3 / 4]  # b_c = beta_c / (1 + beta_c)
    out = method.objective(linear_model, Batch(x=x, y=y, indices=torch.arange(3), epoch=10))
    expected = sum((1 - b[i]) * ce_clean[i] + b[i] * kl_adv[i] for i in range(3)) / 3
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    # With ccr off the weight stays 6/7 even in the class-wise phase.
    off = configured("cfa_trades", {"ccr": False})
    off.class_accuracy = method.class_accuracy
    assert off.class_trades_beta() is None
    out = off.objective(linear_model, Batch(x=x, y=y, indices=torch.arange(3), epoch=10))
    assert out.loss.item() == pytest.approx(sum((1 / 7) * ce_clean[i] + (6 / 7) * kl_adv[i] for i in range(3)) / 3, rel=1e-5)


def test_fawa_updates_only_above_threshold_and_is_an_ema(monkeypatch):
    method = create_method("cfa")
    model = tiny_model()
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
    floats = [k for k, v in new.items() if v.is_floating_point()]
    integers = [k for k, v in new.items() if not v.is_floating_point()]
    assert "backbone.stage1.1.running_mean" in floats and "backbone.stage1.1.num_batches_tracked" in integers
    for key in floats:  # weights and batch-norm statistics are averaged
        assert torch.allclose(averaged[key], 0.88 * first[key] + 0.12 * new[key], atol=1e-6), key
    for key in integers:  # counters are copied
        assert torch.equal(averaged[key], new[key]), key
    assert method.fawa_updates == 2


@pytest.mark.parametrize(("eps", "steps"), [(0.0, 0), (0.1, 1)])
def test_class_robust_accuracy_per_class_by_hand(linear_model, eps, steps):
    generator = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (12, 1, 2, 2), generator=generator, dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2] * 4)
    data = DeviceImageSet(images, labels)
    validation = {"eps": eps, "step_size": eps, "steps": steps, "start": "none"}
    method = create_method("cfa", {"validation": validation})
    accuracy = cfa_module.class_robust_accuracy(linear_model, data, method.params.validation, batch_size=5, num_classes=3)
    x = images.float() / 255
    # One signed CE step of size eps from x (none when eps = 0): FGSM by hand.
    gradient = linear_model.input_gradient_by_hand(x, lambda i, z: ce_logit_gradient(z, int(labels[i])))
    x_adv = (x + eps * gradient.sign()).clamp(0, 1)
    predicted = linear_model(x_adv).argmax(dim=1).tolist()
    per_class = []
    for c in range(3):
        rows = [i for i in range(12) if int(labels[i]) == c]
        per_class.append(sum(predicted[i] == c for i in rows) / len(rows))
    assert accuracy.tolist() == pytest.approx(per_class)
    assert method.worst_class_validation_accuracy(linear_model, data, 3) == pytest.approx(min(per_class))
    # The attacked case must change some prediction, or it would test nothing beyond the clean one.
    assert (predicted != linear_model(x).argmax(dim=1).tolist()) == (eps > 0)


def test_cfa_registry_entries_masks_and_validation():
    assert configured("dhat_cfa").needs_masks
    assert isinstance(configured("dhat_cfa").base, method_class("dhat"))
    for name in ("cfa", "cfa_trades"):
        assert not configured(name).needs_masks
    cfa = configured("cfa_trades")
    p = cfa.params
    assert (p.lambda1, p.lambda2, p.fawa_decay, p.fawa_threshold, p.ccm_start_epoch) == (0.5, 0.5, 0.88, 0.2, 10)
    assert cfa.describe()["base_method"] == "trades" and cfa.describe()["params"]["base"]["beta"] == 6.0
    assert cfa.trades_mode and not create_method("cfa").trades_mode
    with pytest.raises(ValueError, match=r"cfa\.base\.atack"):
        create_method("cfa", {"base": {"atack": {}}})
    with pytest.raises(ValueError, match=r"cfa_trades\.lambda2"):
        configured("cfa_trades", {"lambda2": -0.5})


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("name", ["cfa", "cfa_trades", "dhat_cfa"])
def test_two_epochs_of_training_record_class_accuracy_and_average(name):
    base = {"attack": {"steps": 1}, **({"inverse": {"steps": 1}} if name == "dhat_cfa" else {})}
    params = {"base": base, "ccm_start_epoch": 1, "fawa_threshold": 0.0, "validation": {"steps": 1}}
    method = configured(name, params)
    result = train_tiny(method, epochs=2, masks=name == "dhat_cfa")
    assert len(result.history) == 2
    # Threshold 0: both epochs update FAWA, and the saved weights are the average.
    assert method.fawa_updates == 2
    average = method.average.state_dict()
    assert all(torch.equal(result.last_state[k], average[k].cpu()) for k in average)
    # The class-wise accuracy of the last epoch, weighted by the class counts (6, 5, 5 of the 16
    # training images), is that epoch's training accuracy.
    weighted = float((method.class_accuracy * torch.tensor([6.0, 5.0, 5.0])).sum()) / 16
    assert 100 * weighted == pytest.approx(result.history[-1]["train_acc"])
