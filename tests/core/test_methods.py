"""Training objectives against independently computed losses; registry and validation."""

import math

from tests.hand import ce as _ce
from tests.hand import kl as _kl
from tests.hand import softmax as _softmax

import pytest
import torch
import torch.nn.functional as F

import dhat.methods.dhat as dhat_module
import dhat.methods.uiat as uiat_module
from dhat.methods import Batch, available_methods, create_method





def _cos2(a, b):
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot**2 / (sum(x * x for x in a) * sum(y * y for y in b))


@pytest.fixture
def fixed_examples(monkeypatch):
    """Replace the attacks by fixed examples so the loss can be computed by hand."""
    x = torch.tensor([[[[0.1, 0.9], [0.4, 0.6]]], [[[0.8, 0.2], [0.3, 0.7]]]])
    x_adv = (x + torch.tensor([1.0, -1.0, 1.0, -1.0]).view(1, 1, 2, 2) * 0.03).clamp(0, 1)
    x_inv = (x - torch.tensor([1.0, 1.0, -1.0, -1.0]).view(1, 1, 2, 2) * 0.02).clamp(0, 1)
    fake = lambda model, batch, attack, inverse: (x_adv, x_inv)  # noqa: E731
    monkeypatch.setattr(uiat_module, "craft_adversarial_and_inverse", fake)
    monkeypatch.setattr(dhat_module, "craft_adversarial_and_inverse", fake)
    return x, x_adv, x_inv


def test_uiat_loss_matches_hand_computation(linear_model, fixed_examples):
    x, x_adv, x_inv = fixed_examples
    y = torch.tensor([2, 0])
    out = create_method("uiat", {"beta": 3.5}).objective(linear_model, Batch(x=x, y=y, indices=torch.arange(2)))
    z_adv, z_inv = linear_model(x_adv).tolist(), linear_model(x_inv).tolist()
    ce = sum(_ce(z_adv[i], int(y[i])) for i in range(2)) / 2
    kl = sum(_kl(_softmax(z_adv[i]), _softmax(z_inv[i])) for i in range(2)) / 2
    assert out.loss.item() == pytest.approx(ce + 3.5 * kl, rel=1e-5, abs=1e-6)
    assert out.parts["kl_inv"].item() == pytest.approx(kl, rel=1e-3)


@pytest.mark.parametrize(("name", "l1", "l2"), [("dhat", 1.0, 1.0), ("dhat_dhlr_only", 1.0, 0.0), ("dhat_floe_only", 0.0, 1.0)])
def test_dhat_loss_matches_hand_computation(linear_model, fixed_examples, name, l1, l2):
    x, x_adv, x_inv = fixed_examples
    y = torch.tensor([1, 2])
    masks = torch.tensor([[[0.05, 0.9], [0.5, 0.0]], [[1.0, 0.09], [0.2, 0.3]]])
    method = create_method(name, {"omega": 0.1, "floe": "bounded"})
    out = method.objective(linear_model, Batch(x=x, y=y, indices=torch.arange(2), masks=masks))
    x_bg = x_inv * (masks < 0.1).unsqueeze(1).float()
    z_adv, z_inv, z_bg = (linear_model(t).tolist() for t in (x_adv, x_inv, x_bg))
    ce = sum(_ce(z_adv[i], int(y[i])) for i in range(2)) / 2
    z_star = [[a - b for a, b in zip(z_inv[i], z_bg[i], strict=True)] for i in range(2)]
    dhlr = sum(_kl(_softmax(z_adv[i]), _softmax(z_star[i])) for i in range(2)) / 2
    floe = sum(_cos2(z_inv[i], z_bg[i]) for i in range(2)) / 2
    assert out.loss.item() == pytest.approx(ce + l1 * dhlr + l2 * floe, rel=1e-5)
    assert out.parts["dhlr"].item() == pytest.approx(dhlr, rel=1e-5)
    assert out.parts["floe"].item() == pytest.approx(floe, rel=1e-5)


def test_pgd_at_and_natural_losses(linear_model):
    torch.manual_seed(0)
    x, y = torch.rand(4, 1, 2, 2), torch.tensor([0, 1, 2, 1])
    natural = create_method("natural").objective(linear_model, Batch(x=x, y=y, indices=torch.arange(4)))
    assert natural.loss.item() == pytest.approx(F.cross_entropy(linear_model(x), y).item())
    at = create_method("pgd_at").objective(linear_model, Batch(x=x, y=y, indices=torch.arange(4)))
    assert at.loss.item() > natural.loss.item()  # the attack raises the loss


def test_dhat_without_masks_names_the_missing_pipeline(linear_model):
    with pytest.raises(ValueError, match="mask_precomputation"):
        create_method("dhat").objective(linear_model, Batch(x=torch.rand(2, 1, 2, 2), y=torch.tensor([0, 1]), indices=torch.arange(2)))


def test_registry_lists_methods_and_rejects_bad_parameters():
    assert {"natural", "pgd_at", "uiat", "dhat", "dhat_dhlr_only", "dhat_floe_only"} <= set(available_methods())
    assert create_method("dhat_floe_only").params.lambda1 == 0.0
    assert create_method("dhat_dhlr_only").params.lambda2 == 0.0
    assert create_method("pgd_at", {"attack": {"eps": "8/255"}}).params.attack.eps == pytest.approx(8 / 255)
    with pytest.raises(ValueError, match="method.name='trades_plus'"):
        create_method("trades_plus")
    with pytest.raises(ValueError, match=r"pgd_at.attack.eps must be >= 0"):
        create_method("pgd_at", {"attack": {"eps": -0.1}})
    with pytest.raises(ValueError, match=r"dhat.attack.epsilon"):
        create_method("dhat", {"attack": {"epsilon": 0.1}})
    with pytest.raises(ValueError, match=r"dhat.floe must be one of"):
        create_method("dhat", {"floe": "sideways"})
    with pytest.raises(ValueError, match=r"dhat.omega"):
        create_method("dhat", {"omega": 1.5})
