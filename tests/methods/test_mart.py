"""MART: its loss and gradients against a hand computation; defaults; per-sample radius; training."""

import math

import pytest
import torch
from torch import nn

from dhat.losses import top_wrong_class
from dhat.methods import Batch, create_method
from tests.hand import ce, kl, softmax
from tests.methods.helpers import fix_attack, train_tiny

CLEAN = [[1.0, 2.0, 0.5], [0.2, -0.3, 1.5]]
ADV = [[0.3, 1.1, 0.9], [1.2, 0.1, 0.4]]
Y = [1, 2]  # row 0: top adversarial class is y -> y'' = 2nd (class 2); row 1: top is wrong -> y'' = class 0


class FixedLogits(nn.Module):
    """Returns stored logits (trainable) for the stored clean and adversarial inputs."""

    def __init__(self, x, x_adv, clean, adv):
        super().__init__()
        self.x, self.x_adv = x, x_adv
        self.clean = nn.Parameter(torch.tensor(clean, dtype=torch.float64))
        self.adv = nn.Parameter(torch.tensor(adv, dtype=torch.float64))

    def forward(self, x):
        if torch.equal(x, self.x):
            return self.clean
        if torch.equal(x, self.x_adv):
            return self.adv
        raise AssertionError("unexpected input")


def _mart_by_hand(clean, adv, y, beta):
    total = 0.0
    for zc, za, label in zip(clean, adv, y, strict=True):
        pa, pc = softmax(za), softmax(zc)
        wrong = max((k for k in range(3) if k != label), key=lambda k: pa[k])
        total += ce(za, label) - math.log(1.0001 - pa[wrong]) + beta * kl(pc, pa) * (1 - pc[label])
    return total / len(y)


def test_top_wrong_class_is_top1_if_wrong_else_top2():
    assert top_wrong_class(torch.tensor(ADV), torch.tensor(Y)).tolist() == [2, 0]


def test_mart_loss_matches_hand_computation_and_nothing_is_detached(monkeypatch):
    x, x_adv = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    model = FixedLogits(x, x_adv, CLEAN, ADV)
    method = create_method("mart", {"beta": 5.0})
    fix_attack(monkeypatch, method, x_adv)
    out = method.objective(model, Batch(x=x, y=torch.tensor(Y), indices=torch.arange(2)))
    assert out.loss.item() == pytest.approx(_mart_by_hand(CLEAN, ADV, Y, 5.0), rel=1e-9)
    assert out.parts["ce_adv"].item() == pytest.approx((ce(ADV[0], 1) + ce(ADV[1], 2)) / 2, rel=1e-9)
    split = method.loss_on(model, Batch(x=x, y=torch.tensor(Y), indices=torch.arange(2)), {"x_adv": x_adv})
    assert split.loss.item() == out.loss.item()  # craft/loss_on split used by weight-perturbation wrappers
    # Every logit (clean ones through the KL and its 1 - p_y weight) gets the hand-derived gradient.
    out.loss.backward()
    h = 1e-6
    for name, table, grad in (("clean", CLEAN, model.clean.grad), ("adv", ADV, model.adv.grad)):
        for i in range(2):
            for k in range(3):
                up = [row[:] for row in table]
                down = [row[:] for row in table]
                up[i][k] += h
                down[i][k] -= h
                args_up = (up, ADV) if name == "clean" else (CLEAN, up)
                args_down = (down, ADV) if name == "clean" else (CLEAN, down)
                numeric = (_mart_by_hand(*args_up, Y, 5.0) - _mart_by_hand(*args_down, Y, 5.0)) / (2 * h)
                assert grad[i, k].item() == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def test_mart_defaults_and_validation():
    params = create_method("mart").params
    assert params.beta == 6.0
    assert params.attack.start == "normal" and params.attack.bn_mode == "eval"
    assert (params.attack.eps, params.attack.step_size, params.attack.steps) == pytest.approx((8 / 255, 2 / 255, 10))
    with pytest.raises(ValueError, match=r"mart\.beta must be >= 0"):
        create_method("mart", {"beta": -1.0})
    with pytest.raises(ValueError, match=r"mart\.attack\.start"):
        create_method("mart", {"attack": {"start": "sideways"}})


def test_mart_passes_the_per_sample_radius_to_the_attack(monkeypatch, linear_model):
    method = create_method("mart")
    seen = {}

    def craft(model, x, y, eps=None):
        seen["eps"] = eps
        return x

    monkeypatch.setattr(method.params.attack, "craft", craft)
    radius = torch.tensor([0.01, 0.02])
    x = torch.rand(2, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    method.objective(linear_model, Batch(x=x, y=torch.tensor([0, 1]), indices=torch.arange(2), attack_eps=radius))
    assert torch.equal(seen["eps"], radius)


@pytest.mark.usefixtures("single_thread")
def test_training_logs_parts_that_add_up_to_the_loss():
    result = train_tiny(create_method("mart", {"attack": {"steps": 1}}))
    (row,) = result.history
    # Each batch's loss is ce_adv + boost + beta * kl_weighted, so the epoch averages are too.
    assert row["loss"] == pytest.approx(row["ce_adv"] + row["boost"] + 6.0 * row["kl_weighted"], rel=1e-5)
    assert row["boost"] > 0 and row["kl_weighted"] > 0
