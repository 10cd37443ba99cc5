"""Attack steps against hand-computed gradients of a linear model (dhat.attacks)."""

import pytest
import torch
import torch.nn.functional as F

from dhat.attacks import (
    batchnorm_mode,
    cw_linf,
    fgsm,
    inverse_attack,
    margin_loss,
    pgd,
    project_linf,
    random_start,
    signed_gradient_attack,
)
from dhat.models import build_model
from tests.hand import ce_logit_gradient, one_hot, softmax

EPS = 8 / 255


def _ce_gradient(model, x, y):
    """d CE / d x for logits = W x + b: W^T (softmax - onehot), computed by hand."""
    return model.input_gradient_by_hand(x, lambda i, z: ce_logit_gradient(z, int(y[i])))


def test_fgsm_equals_hand_computed_signed_gradient_step(linear_model):
    x = torch.tensor([[[[0.2, 0.5], [0.99, 0.0]]]])
    y = torch.tensor([1])
    expected = (x + EPS * _ce_gradient(linear_model, x, y).sign()).clamp(0, 1)
    assert torch.allclose(fgsm(linear_model, x, y, EPS), expected)


def test_one_pgd_step_without_random_start_matches_hand_computation(linear_model):
    x = torch.rand(4, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0])
    step = 2 / 255
    expected = project_linf(x + step * _ce_gradient(linear_model, x, y).sign(), x, EPS)
    assert torch.allclose(pgd(linear_model, x, y, EPS, step, steps=1, start="none"), expected)


def test_project_linf_clips_to_the_ball_then_to_the_pixel_range():
    x = torch.tensor([0.5, 0.5, 0.98, 0.02])
    moved = torch.tensor([0.7, 0.45, 1.2, -0.3])
    assert torch.allclose(project_linf(moved, x, 0.1), torch.tensor([0.6, 0.45, 1.0, 0.0]))


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
    # Seven steps of 4/255 reach the border of the 8/255 ball wherever the pixel range allows it.
    free = (x >= EPS) & (x <= 1 - EPS)
    assert free.sum() > 30
    assert torch.allclose((x_adv - x)[free].abs(), torch.full((int(free.sum()),), EPS), atol=1e-6)


def test_pgd_increases_the_loss_and_records_iterates(linear_model):
    torch.manual_seed(0)
    x = torch.rand(32, 1, 2, 2)
    y = torch.randint(0, 3, (32,))
    torch.manual_seed(5)
    final, iterates = signed_gradient_attack(
        linear_model, x, lambda z: F.cross_entropy(z, y, reduction="sum"), EPS, 2 / 255, 5, record_at=(2, 5)
    )
    assert set(iterates) == {2, 5}
    assert torch.equal(iterates[5], final)
    torch.manual_seed(5)
    two_steps, _ = signed_gradient_attack(linear_model, x, lambda z: F.cross_entropy(z, y, reduction="sum"), EPS, 2 / 255, 2)
    assert torch.equal(iterates[2], two_steps)
    assert F.cross_entropy(linear_model(final), y) > F.cross_entropy(linear_model(x), y)


def test_per_sample_radius_is_respected(linear_model):
    x = torch.full((3, 1, 2, 2), 0.5)
    eps = torch.tensor([0.0, 2 / 255, 16 / 255])
    torch.manual_seed(0)
    x_adv = pgd(linear_model, x, torch.tensor([0, 1, 2]), eps, 1 / 255, steps=20, start="uniform")
    per_sample = (x_adv - x).abs().flatten(1).max(1).values
    assert torch.all(per_sample <= eps + 1e-6)
    assert per_sample[0] == 0 and per_sample[2] > 2 / 255  # the large radius is actually used


def test_margin_loss_hand_computed():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, -1.0]])
    # Row 1, y=0: max other 2 - 3 = -1. Row 2, y=2: 5 - (-1) = 6.
    assert margin_loss(torch.tensor([0, 2]))(logits).item() == pytest.approx(5.0)


def test_one_cw_step_follows_the_margin_gradient(linear_model, monkeypatch):
    x = torch.rand(4, 1, 2, 2, generator=torch.Generator().manual_seed(3)) * 0.8 + 0.1
    y = torch.tensor([0, 1, 2, 0])
    torch.manual_seed(0)
    start = random_start(x, EPS, "uniform")
    torch.manual_seed(0)
    x_adv = cw_linf(linear_model, x, y, EPS, 2 / 255, 1)

    def margin_gradient(i, z):  # d (z_j* - z_y) / d z, j* the best other class
        j = max((k for k in range(3) if k != int(y[i])), key=lambda k: z[k])
        return [float(k == j) - float(k == int(y[i])) for k in range(3)]

    expected = project_linf(start + 2 / 255 * linear_model.input_gradient_by_hand(start, margin_gradient).sign(), x, EPS)
    assert torch.allclose(x_adv, expected)


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


def test_one_inverse_step_matches_hand_computation(linear_model):
    x = torch.rand(4, 1, 2, 2, generator=torch.Generator().manual_seed(6)) * 0.8 + 0.1
    y = torch.tensor([2, 0, 1, 1])
    z_clean = linear_model(x).detach()
    z_adv = z_clean + torch.tensor([[1.0, -0.5, 0.2]])  # any fixed "adversarial" prediction
    x_inv = inverse_attack(linear_model, x, y, z_clean, z_adv, eps=4 / 255, step_size=4 / 255, steps=1, start="none")
    # Descent on CE + KL(p_clean || p) - KL(p_adv || p): the logit gradient is
    # (p - onehot) + (p - p_clean) - (p - p_adv), which at x' = x (p = p_clean) is p_adv - onehot.
    p_adv = [softmax(row) for row in z_adv.tolist()]
    gradient = linear_model.input_gradient_by_hand(
        x, lambda i, z: [a - t for a, t in zip(p_adv[i], one_hot(int(y[i]), 3), strict=True)]
    )
    assert torch.allclose(x_inv, (x - 4 / 255 * gradient.sign()).clamp(0, 1))


def test_random_start_uniform_fills_the_ball():
    torch.manual_seed(0)
    x = torch.full((1000, 1, 1, 1), 0.5)
    start = random_start(x, EPS, "uniform")
    assert (start - x).abs().max() <= EPS + 1e-7
    assert (start - x).abs().max() > 0.9 * EPS
    assert abs((start - x).mean().item()) < 0.1 * EPS  # centred on x
    with pytest.raises(ValueError, match="random start"):
        random_start(x, EPS, "gaussian")


def test_random_start_normal_is_a_small_gaussian_step():
    x = torch.full((4, 1, 2, 2), 0.5)
    torch.manual_seed(3)
    noise = torch.randn_like(x)
    torch.manual_seed(3)
    assert torch.allclose(random_start(x, EPS, "normal", normal_std=0.01), x + 0.01 * noise)
    assert torch.equal(random_start(x, EPS, "none"), x)


def test_batchnorm_mode_restores_the_previous_mode():
    model = build_model("small_cnn", num_classes=3, width=2).train()
    with batchnorm_mode(model, "eval"):
        assert not model.training and not model.backbone.stage1[1].training
    assert model.training
    model.eval()
    with batchnorm_mode(model, "train"):
        assert model.training
    assert not model.training
    with pytest.raises(RuntimeError), batchnorm_mode(model, "train"):
        raise RuntimeError("the mode is restored even on errors")
    assert not model.training
    with pytest.raises(ValueError, match="batch-norm mode"), batchnorm_mode(model, "frozen"):
        pass
