"""PGD adversarial training: CE at the PGD examples, checked against a hand-computed attack step."""

import pytest
import torch

from dhat.methods import Batch, create_method
from tests.hand import ce, ce_logit_gradient
from tests.methods.helpers import EPS, assert_objective_equals_loss_on_crafted


def _data():
    x = torch.rand(4, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    return x, torch.tensor([0, 1, 2, 1])


def test_loss_is_cross_entropy_at_a_hand_computed_attack_step(linear_model):
    x, y = _data()
    method = create_method("pgd_at", {"attack": {"steps": 1, "step_size": "8/255", "start": "none"}})
    out = method.objective(linear_model, Batch(x=x, y=y, indices=torch.arange(4)))
    gradient = linear_model.input_gradient_by_hand(x, lambda i, z: ce_logit_gradient(z, int(y[i])))
    x_adv = (x + EPS * gradient.sign()).clamp(0, 1)
    z_adv = linear_model(x_adv)
    expected = sum(ce(row, int(y[i])) for i, row in enumerate(z_adv.tolist())) / 4
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    assert out.parts["ce_adv"].item() == pytest.approx(expected, rel=1e-5)
    assert torch.allclose(out.logits, z_adv)


def test_zero_per_sample_radius_gives_the_natural_loss_and_the_default_attack_raises_it(linear_model):
    x, y = _data()
    method = create_method("pgd_at")
    natural = create_method("natural").objective(linear_model, Batch(x=x, y=y, indices=torch.arange(4))).loss
    torch.manual_seed(0)
    no_radius = method.objective(linear_model, Batch(x=x, y=y, indices=torch.arange(4), attack_eps=torch.zeros(4)))
    assert no_radius.loss.item() == pytest.approx(natural.item(), rel=1e-6)
    torch.manual_seed(0)
    attacked = method.objective(linear_model, Batch(x=x, y=y, indices=torch.arange(4)))
    assert attacked.loss.item() > natural.item() + 1e-3


def test_objective_equals_loss_on_crafted():
    assert_objective_equals_loss_on_crafted("pgd_at", {"attack": {"steps": 1}})
