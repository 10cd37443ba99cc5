"""DHAT: the full objective and its ablations against hand computation; masks and validation."""

import pytest
import torch

import dhat.methods.dhat as dhat_module
from dhat.methods import Batch, create_method
from tests.hand import ce, cos2, kl, softmax
from tests.methods.helpers import assert_objective_equals_loss_on_crafted, fixed_inputs

MASKS = torch.tensor([[[0.05, 0.9], [0.5, 0.0]], [[1.0, 0.1], [0.2, 0.3]]])


@pytest.fixture
def fixed_examples(linear_model, monkeypatch):
    """Replace the attacks by fixed examples so the loss can be computed by hand."""
    x, x_adv, x_inv = fixed_inputs()
    monkeypatch.setattr(dhat_module, "craft_adversarial_and_inverse", lambda model, batch, attack, inverse: (x_adv, x_inv))
    return x, x_adv, x_inv


@pytest.mark.parametrize(("l1", "l2"), [(1.0, 1.0), (1.0, 0.0), (0.0, 1.0)])  # DHAT and its two ablations
def test_dhat_loss_matches_hand_computation(linear_model, fixed_examples, l1, l2):
    x, x_adv, x_inv = fixed_examples
    y = torch.tensor([1, 2])
    method = create_method("dhat", {"mask_rule": "absolute", "omega": 0.1, "floe": "bounded", "lambda1": l1,
                                    "lambda2": l2})
    out = method.objective(linear_model, Batch(x=x, y=y, indices=torch.arange(2), masks=MASKS))
    # Background image: x_inv where the mask is below omega = 0.1 (strictly: 0.1 itself is foreground), zero elsewhere.
    background = [[[1.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]
    x_bg = x_inv * torch.tensor(background).unsqueeze(1)
    z_adv, z_inv, z_bg = (linear_model(t).tolist() for t in (x_adv, x_inv, x_bg))
    ce_adv = sum(ce(z_adv[i], int(y[i])) for i in range(2)) / 2
    z_star = [[a - b for a, b in zip(z_inv[i], z_bg[i], strict=True)] for i in range(2)]
    dhlr = sum(kl(softmax(z_adv[i]), softmax(z_star[i])) for i in range(2)) / 2
    floe = sum(cos2(z_inv[i], z_bg[i]) for i in range(2)) / 2
    assert out.loss.item() == pytest.approx(ce_adv + l1 * dhlr + l2 * floe, rel=1e-5)
    assert out.parts["dhlr"].item() == pytest.approx(dhlr, rel=1e-5)
    assert out.parts["floe"].item() == pytest.approx(floe, rel=1e-5)
    assert torch.allclose(out.logits, linear_model(x_adv))


def test_dhat_without_masks_names_the_missing_pipeline(linear_model):
    batch = Batch(x=torch.full((2, 1, 2, 2), 0.5), y=torch.tensor([0, 1]), indices=torch.arange(2))
    with pytest.raises(ValueError, match="mask_precomputation"):
        create_method("dhat").objective(linear_model, batch)
    assert create_method("dhat").needs_masks and create_method("dhat", {"lambda1": 0.0}).needs_masks


def test_dhat_validation_names_the_field():
    with pytest.raises(ValueError, match=r"dhat.floe must be one of"):
        create_method("dhat", {"floe": "sideways"})
    with pytest.raises(ValueError, match=r"dhat.omega"):
        create_method("dhat", {"omega": 1.5})
    with pytest.raises(ValueError, match=r"dhat.dhlr_form must be one of reference, paper"):
        create_method("dhat", {"dhlr_form": "both"})
    with pytest.raises(ValueError, match=r"dhat_floe_only.method.params.lambda2 must be >= 0"):
        create_method("dhat", {"lambda2": -1.0}, section="dhat_floe_only.method.params")


def test_objective_equals_loss_on_crafted():
    assert_objective_equals_loss_on_crafted("dhat", {"attack": {"steps": 1}, "inverse": {"steps": 1}})
