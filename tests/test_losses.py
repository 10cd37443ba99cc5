"""DHAT / UIAT loss terms (dhat.losses) against values computed by hand on 2x3 logit matrices."""

import math

import pytest
import torch

from dhat.losses import debiased_logits, dhlr_loss, floe_loss, kl_between_logits
from tests.hand import cos2, kl, softmax


@pytest.fixture
def z_inv() -> torch.Tensor:
    """Fresh per test, so no test can see another's in-place change."""
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])


@pytest.fixture
def z_bg() -> torch.Tensor:
    return torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def test_kl_between_logits_matches_hand_computation_in_both_directions():
    a = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    b = torch.tensor([[3.0, 2.0, 1.0], [1.0, 0.0, -1.0]])
    forward = (kl(softmax([1, 2, 3]), softmax([3, 2, 1])) + kl(softmax([0, 0, 0]), softmax([1, 0, -1]))) / 2
    backward = (kl(softmax([3, 2, 1]), softmax([1, 2, 3])) + kl(softmax([1, 0, -1]), softmax([0, 0, 0]))) / 2
    assert kl_between_logits(a, b).item() == pytest.approx(forward, rel=1e-6)
    assert kl_between_logits(b, a).item() == pytest.approx(backward, rel=1e-6)
    assert abs(forward - backward) > 1e-3  # KL is not symmetric, so the two checks are distinct


def test_dhlr_forms_are_the_two_kl_directions(z_inv, z_bg):
    z_star = debiased_logits(z_inv, z_bg)
    assert torch.equal(z_star, torch.tensor([[0.0, -1.0, 0.0], [0.0, 2.0, -1.0]]))
    z_adv = torch.tensor([[0.5, 0.0, 1.0], [2.0, 0.0, 0.0]])
    ref = sum(kl(softmax(z_adv[i].tolist()), softmax(z_star[i].tolist())) for i in range(2)) / 2
    paper = sum(kl(softmax(z_star[i].tolist()), softmax(z_adv[i].tolist())) for i in range(2)) / 2
    assert dhlr_loss(z_star, z_adv, "reference").item() == pytest.approx(ref, rel=1e-6)
    assert dhlr_loss(z_star, z_adv, "paper").item() == pytest.approx(paper, rel=1e-6)
    assert dhlr_loss(z_star, z_adv).item() == pytest.approx(ref, rel=1e-6)  # reference by default


def test_floe_paper_variant_is_minus_mean_orthogonal_residual_norm(z_inv, z_bg):
    # Row 1: residual [1,0,0] - 0.5 [1,1,0] = [0.5,-0.5,0], norm sqrt(0.5); row 2: z_inv is already orthogonal, norm 2.
    expected = -(math.sqrt(0.5) + 2.0) / 2
    assert floe_loss(z_inv, z_bg, "paper").item() == pytest.approx(expected, rel=1e-6)
    # p = 1: |0.5| + |-0.5| = 1 and 2.
    assert floe_loss(z_inv, z_bg, "paper", p=1.0).item() == pytest.approx(-1.5, rel=1e-6)


def test_floe_reference_variant_uses_batch_matrices(z_inv, z_bg):
    # Z_bg Z_bg^T = diag(2, 1), Frobenius norm sqrt(5); Z_inv Z_bg^T = [[1, 0], [2, 0]].
    s5 = math.sqrt(5.0)
    residual = [[1 - 1 / s5, -1 / s5, 0.0], [-2 / s5, 2 - 2 / s5, 0.0]]
    expected = math.sqrt(sum(v * v for row in residual for v in row)) / 2
    assert floe_loss(z_inv, z_bg, "reference").item() == pytest.approx(expected, rel=1e-6)


def test_floe_bounded_variant_is_mean_squared_cosine(z_inv, z_bg):
    # cos(row1) = 1 / sqrt(2) -> 0.5; row 2 orthogonal -> 0.
    assert floe_loss(z_inv, z_bg, "bounded").item() == pytest.approx(0.25, rel=1e-6)
    assert floe_loss(z_inv, z_bg).item() == pytest.approx(0.25, rel=1e-6)  # bounded by default
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 10, generator=generator), torch.randn(8, 10, generator=generator)
    expected = sum(cos2(a[i].tolist(), b[i].tolist()) for i in range(8)) / 8
    assert floe_loss(a, b, "bounded").item() == pytest.approx(expected, rel=1e-5)


def test_floe_bounded_gradient_by_hand_pushes_away_from_the_background(z_inv, z_bg):
    leaf = z_inv.clone().requires_grad_(True)
    floe_loss(leaf, z_bg, "bounded").backward()
    # d cos^2 / d a = 2 (a.b) b / (|a|^2 |b|^2) - 2 (a.b)^2 a / (|a|^4 |b|^2), halved by the batch mean:
    # row 1 (a.b = 1, |a|^2 = 1, |b|^2 = 2) gives ([1,1,0] - [1,0,0]) / 2; row 2 (a.b = 0) gives 0.
    assert torch.allclose(leaf.grad, torch.tensor([[0.0, 0.5, 0.0], [0.0, 0.0, 0.0]]), atol=1e-6)
    stepped = (z_inv - 0.1 * leaf.grad).detach()
    assert floe_loss(stepped, z_bg, "bounded") < floe_loss(z_inv, z_bg, "bounded")


def test_unknown_variants_are_rejected_by_name(z_inv, z_bg):
    with pytest.raises(ValueError, match="floe variant"):
        floe_loss(z_inv, z_bg, "sideways")
    with pytest.raises(ValueError, match="dhlr_form"):
        dhlr_loss(z_inv, z_bg, "both")
