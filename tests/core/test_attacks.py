"""Attack steps against hand-computed gradients of a linear model."""

import pytest
import torch
import torch.nn.functional as F

from dhat.attacks import (
    batchnorm_mode,
    fgsm,
    inverse_attack,
    margin_loss,
    pgd,
    project_linf,
    random_start,
    signed_gradient_attack,
)
from dhat.models import build_model

EPS = 8 / 255


def _ce_input_gradient(model, x, y):
    """d CE / d x for logits = W x + b: W^T (softmax - onehot), computed without autograd."""
    weight = model.linear.weight.detach()
    probs = F.softmax(model(x).detach(), dim=1)
    onehot = F.one_hot(y, probs.shape[1]).float()
    return ((probs - onehot) @ weight).view_as(x)


def test_fgsm_equals_hand_computed_signed_gradient_step(linear_model):
    x = torch.tensor([[[[0.2, 0.5], [0.99, 0.0]]]])
    y = torch.tensor([1])
    expected = (x + EPS * _ce_input_gradient(linear_model, x, y).sign()).clamp(0, 1)
    assert torch.allclose(fgsm(linear_model, x, y, EPS), expected)


def test_one_pgd_step_without_random_start_matches_hand_computation(linear_model):
    x = torch.rand(4, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0])
    step = 2 / 255
    expected = project_linf(x + step * _ce_input_gradient(linear_model, x, y).sign(), x, EPS)
    assert torch.allclose(pgd(linear_model, x, y, EPS, step, steps=1, start="none"), expected)


@pytest.mark.parametrize("start", ["uniform", "normal", "none"])
def test_pgd_stays_in_eps_ball_and_pixel_range(linear_model, start):
    torch.manual_seed(0)
    x = torch.rand(16, 1, 2, 2)
    x[:4] = 0.0  # corners of the pixel range
    x[4:8] = 1.0
    y = torch.randint(0, 3, (16,))
    x_adv = pgd(linear_model, x, y, EPS, 4 / 255, steps=7, start=start)
    assert (x_adv - x).abs().max() <= EPS + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_pgd_increases_the_loss_and_records_iterates(linear_model):
    torch.manual_seed(0)
    x = torch.rand(32, 1, 2, 2)
    y = torch.randint(0, 3, (32,))
    torch.manual_seed(5)
    final, iterates = signed_gradient_attack(
        linear_model, x, lambda z: F.cross_entropy(z, y, reduction="sum"), EPS, 2 / 255, 5, record_at=(2, 5)
    )
    assert torch.equal(iterates[5], final)
    torch.manual_seed(5)
    two_steps, _ = signed_gradient_attack(linear_model, x, lambda z: F.cross_entropy(z, y, reduction="sum"), EPS, 2 / 255, 2)
    assert torch.equal(iterates[2], two_steps)
    assert F.cross_entropy(linear_model(final), y) > F.cross_entropy(linear_model(x), y)


def test_per_sample_radius_is_respected(linear_model):
    x = torch.full((3, 1, 2, 2), 0.5)
    eps = torch.tensor([0.0, 2 / 255, 16 / 255])
    x_adv = pgd(linear_model, x, torch.tensor([0, 1, 2]), eps, 1 / 255, steps=20, start="uniform")
    per_sample = (x_adv - x).abs().flatten(1).max(1).values
    assert torch.all(per_sample <= eps + 1e-6)
    assert per_sample[2] > 2 / 255  # the large radius is actually used


def test_margin_loss_hand_computed():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, -1.0]])
    # Row 1, y=0: max other 2 - 3 = -1. Row 2, y=2: 5 - (-1) = 6.
    assert margin_loss(torch.tensor([0, 2]))(logits).item() == pytest.approx(5.0)


def test_inverse_attack_raises_true_class_confidence(linear_model):
    torch.manual_seed(0)
    x = torch.rand(32, 1, 2, 2)
    y = torch.randint(0, 3, (32,))
    x_adv = pgd(linear_model, x, y, EPS, 2 / 255, 10)
    with torch.no_grad():
        z_clean, z_adv = linear_model(x), linear_model(x_adv)
    x_inv = inverse_attack(linear_model, x, y, z_clean, z_adv, eps=4 / 255, step_size=2 / 255, steps=10)
    assert (x_inv - x).abs().max() <= 4 / 255 + 1e-6
    p_true = lambda z: F.softmax(z, 1).gather(1, y[:, None]).mean()  # noqa: E731
    assert p_true(linear_model(x_inv)) > p_true(z_clean) > p_true(z_adv)


def test_random_start_uniform_fills_the_ball():
    torch.manual_seed(0)
    x = torch.full((1000, 1, 1, 1), 0.5)
    start = random_start(x, EPS, "uniform")
    assert (start - x).abs().max() <= EPS + 1e-7
    assert (start - x).abs().max() > 0.9 * EPS
    with pytest.raises(ValueError, match="random start"):
        random_start(x, EPS, "gaussian")


def test_batchnorm_mode_restores_the_previous_mode():
    model = build_model("small_cnn", num_classes=3, width=2).train()
    with batchnorm_mode(model, "eval"):
        assert not model.training
    assert model.training
    model.eval()
    with batchnorm_mode(model, "train"):
        assert model.training
    assert not model.training
