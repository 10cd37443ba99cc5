"""DHAT / UIAT loss terms against values computed by hand on 2x3 logit matrices."""

import math

from tests.hand import ce as _ce
from tests.hand import kl as _kl
from tests.hand import softmax as _softmax

import pytest
import torch

from dhat.losses import debiased_logits, dhlr_loss, floe_loss, kl_between_logits

Z_INV = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
Z_BG = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])




def test_kl_between_logits_matches_hand_computation_and_direction():
    a = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    b = torch.tensor([[3.0, 2.0, 1.0], [1.0, 0.0, -1.0]])
    expected = (_kl(_softmax([1, 2, 3]), _softmax([3, 2, 1])) + _kl(_softmax([0, 0, 0]), _softmax([1, 0, -1]))) / 2
    assert kl_between_logits(a, b).item() == pytest.approx(expected, rel=1e-6)
    assert kl_between_logits(b, a).item() != pytest.approx(expected, rel=1e-3)  # KL is not symmetric


def test_dhlr_forms_are_the_two_kl_directions():
    z_star = debiased_logits(Z_INV, Z_BG)
    assert torch.equal(z_star, torch.tensor([[0.0, -1.0, 0.0], [0.0, 2.0, -1.0]]))
    z_adv = torch.tensor([[0.5, 0.0, 1.0], [2.0, 0.0, 0.0]])
    ref = sum(_kl(_softmax(z_adv[i].tolist()), _softmax(z_star[i].tolist())) for i in range(2)) / 2
    paper = sum(_kl(_softmax(z_star[i].tolist()), _softmax(z_adv[i].tolist())) for i in range(2)) / 2
    assert dhlr_loss(z_star, z_adv, "reference").item() == pytest.approx(ref, rel=1e-6)
    assert dhlr_loss(z_star, z_adv, "paper").item() == pytest.approx(paper, rel=1e-6)


def test_floe_paper_variant_is_minus_mean_orthogonal_residual_norm():
    # Row 1: residual [1,0,0] - 0.5 [1,1,0] = [0.5,-0.5,0], norm sqrt(0.5); row 2: z_inv is already orthogonal, norm 2.
    expected = -(math.sqrt(0.5) + 2.0) / 2
    assert floe_loss(Z_INV, Z_BG, "paper").item() == pytest.approx(expected, rel=1e-6)
    # p = 1: |0.5| + |-0.5| = 1 and 2.
    assert floe_loss(Z_INV, Z_BG, "paper", p=1.0).item() == pytest.approx(-1.5, rel=1e-6)


def test_floe_reference_variant_uses_batch_matrices():
    # Z_bg Z_bg^T = diag(2, 1), Frobenius norm sqrt(5); Z_inv Z_bg^T = [[1, 0], [2, 0]].
    s5 = math.sqrt(5.0)
    residual = [[1 - 1 / s5, -1 / s5, 0.0], [-2 / s5, 2 - 2 / s5, 0.0]]
    expected = math.sqrt(sum(v * v for row in residual for v in row)) / 2
    assert floe_loss(Z_INV, Z_BG, "reference").item() == pytest.approx(expected, rel=1e-6)


def test_floe_bounded_variant_is_mean_squared_cosine():
    # cos(row1) = 1 / sqrt(2) -> 0.5; row 2 orthogonal -> 0.
    assert floe_loss(Z_INV, Z_BG, "bounded").item() == pytest.approx(0.25, rel=1e-6)
    assert 0.0 <= floe_loss(torch.randn(8, 10), torch.randn(8, 10), "bounded").item() <= 1.0


def test_floe_gradients_push_away_from_background_direction():
    z_inv = Z_INV.clone().requires_grad_(True)
    floe_loss(z_inv, Z_BG, "bounded").backward()
    stepped = (Z_INV - 0.1 * z_inv.grad).detach()
    assert floe_loss(stepped, Z_BG, "bounded") < floe_loss(Z_INV, Z_BG, "bounded")


def test_unknown_variants_are_rejected_by_name():
    with pytest.raises(ValueError, match="floe variant"):
        floe_loss(Z_INV, Z_BG, "sideways")
    with pytest.raises(ValueError, match="dhlr_form"):
        dhlr_loss(Z_INV, Z_BG, "both")
