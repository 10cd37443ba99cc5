"""White-box L-infinity attacks in pixel space ``[0, 1]``.

All attacks take the model as it is: the caller decides train or eval mode
(see :func:`batchnorm_mode`), because some training recipes craft their
examples with batch-norm in train mode and every evaluation uses eval mode.
Gradients are taken with respect to the input only (``torch.autograd.grad``),
so no parameter gradient is left behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "LossOnLogits",
    "batchnorm_mode",
    "cross_entropy_loss",
    "margin_loss",
    "kl_to_reference_loss",
    "project_linf",
    "random_start",
    "signed_gradient_attack",
    "pgd",
    "fgsm",
    "cw_linf",
    "inverse_attack",
]

LossOnLogits = Callable[[torch.Tensor], torch.Tensor]
StartKind = Literal["uniform", "normal", "none"]


@contextlib.contextmanager
def batchnorm_mode(model: nn.Module, mode: Literal["train", "eval", "keep"]) -> Iterator[None]:
    """Temporarily put ``model`` in train or eval mode, restoring it afterwards.

    ``keep`` leaves the mode untouched. Only the mode flag changes: in train
    mode batch-norm running statistics do move with the attack batches, which
    is what the reference DHAT/UIAT code does.
    """
    if mode not in ("train", "eval", "keep"):
        raise ValueError(f"attack batch-norm mode must be 'train', 'eval' or 'keep', got {mode!r}")
    was_training = model.training
    if mode != "keep":
        model.train(mode == "train")
    try:
        yield
    finally:
        model.train(was_training)


def _as_radius(eps: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor | float:
    """Per-sample radii become a broadcastable ``[B, 1, 1, 1]`` tensor."""
    if isinstance(eps, torch.Tensor) and eps.ndim > 0:
        return eps.to(x).view(-1, *([1] * (x.ndim - 1)))
    return float(eps)


def project_linf(x_adv: torch.Tensor, x: torch.Tensor, eps: float | torch.Tensor) -> torch.Tensor:
    """Project onto the L-inf ball of radius ``eps`` around ``x``, then onto ``[0, 1]``."""
    radius = _as_radius(eps, x)
    return torch.min(torch.max(x_adv, x - radius), x + radius).clamp_(0.0, 1.0)


def random_start(x: torch.Tensor, eps: float | torch.Tensor, kind: StartKind, normal_std: float = 0.001) -> torch.Tensor:
    """Starting point of an attack: uniform in the eps-ball, small Gaussian, or ``x`` itself."""
    if kind == "uniform":
        radius = _as_radius(eps, x)
        start = x + (torch.rand_like(x) * 2.0 - 1.0) * radius
    elif kind == "normal":
        start = x + normal_std * torch.randn_like(x)
    elif kind == "none":
        start = x.clone()
    else:
        raise ValueError(f"attack random start must be 'uniform', 'normal' or 'none', got {kind!r}")
    return project_linf(start, x, eps)


def cross_entropy_loss(y: torch.Tensor) -> LossOnLogits:
    """Summed cross-entropy: each sample's gradient is independent of the batch size."""
    return lambda logits: F.cross_entropy(logits, y, reduction="sum")


def margin_loss(y: torch.Tensor) -> LossOnLogits:
    """Summed CW margin ``max_{j != y} z_j - z_y`` (positive once misclassified)."""

    def loss(logits: torch.Tensor) -> torch.Tensor:
        true_logit = logits.gather(1, y[:, None]).squeeze(1)
        others = logits.scatter(1, y[:, None], float("-inf"))
        return (others.max(dim=1).values - true_logit).sum()

    return loss


def kl_to_reference_loss(reference_probs: torch.Tensor) -> LossOnLogits:
    """Summed ``KL(p_ref || p(x'))``, the TRADES inner objective."""
    ref = reference_probs.detach()
    return lambda logits: F.kl_div(F.log_softmax(logits, dim=1), ref, reduction="sum")


def signed_gradient_attack(
    model: nn.Module,
    x: torch.Tensor,
    loss_fn: LossOnLogits,
    eps: float | torch.Tensor,
    step_size: float | torch.Tensor,
    steps: int,
    start: StartKind = "uniform",
    ascend: bool = True,
    record_at: Sequence[int] = (),
    normal_std: float = 0.001,
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Projected signed-gradient iterations (PGD) on ``loss_fn(model(x'))``.

    Args:
        model: classifier on pixel-scale inputs; its mode is left as the caller set it.
        x: clean images in ``[0, 1]``, shape ``[B, C, H, W]``.
        loss_fn: maps logits to a scalar to increase (``ascend``) or decrease.
        eps: L-inf radius, a float or one radius per sample.
        step_size: step per iteration, a float or one per sample.
        steps: number of iterations (0 returns the projected start).
        start: ``uniform`` in the ball, ``normal`` (``x + normal_std * N(0, I)``) or ``none``.
        ascend: ``True`` for attacks, ``False`` for inverse (confidence-raising) examples.
        record_at: iteration numbers whose iterates are also returned, so one long run
            yields the shorter attacks (PGD-10 and PGD-20 inside one PGD-50).

    Returns:
        The final iterate (detached) and ``{k: iterate k}`` for each ``k`` in ``record_at``.
    """
    if steps < 0:
        raise ValueError(f"attack steps must be >= 0, got {steps}")
    x = x.detach()
    step = _as_radius(step_size, x)
    sign = 1.0 if ascend else -1.0
    x_adv = random_start(x, eps, start, normal_std)
    recorded: dict[int, torch.Tensor] = {}
    wanted = set(record_at)
    if 0 in wanted:
        recorded[0] = x_adv.clone()
    for k in range(1, steps + 1):
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            loss = loss_fn(model(x_adv))
            (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = project_linf(x_adv.detach() + sign * step * grad.sign(), x, eps)
        if k in wanted:
            recorded[k] = x_adv.clone()
    return x_adv.detach(), recorded


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | torch.Tensor,
    step_size: float | torch.Tensor,
    steps: int,
    start: StartKind = "uniform",
    normal_std: float = 0.001,
) -> torch.Tensor:
    """Cross-entropy PGD (Madry et al., 2018)."""
    x_adv, _ = signed_gradient_attack(
        model, x, cross_entropy_loss(y), eps, step_size, steps, start=start, normal_std=normal_std
    )
    return x_adv


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """One signed-gradient step of size ``eps`` from ``x`` (no random start)."""
    x_adv, _ = signed_gradient_attack(model, x, cross_entropy_loss(y), eps, eps, 1, start="none")
    return x_adv


def cw_linf(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, step_size: float, steps: int
) -> torch.Tensor:
    """CW-inf: PGD on the logit margin, uniform random start."""
    x_adv, _ = signed_gradient_attack(model, x, margin_loss(y), eps, step_size, steps, start="uniform")
    return x_adv


def inverse_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    logits_clean: torch.Tensor,
    logits_adv: torch.Tensor,
    eps: float | torch.Tensor,
    step_size: float,
    steps: int,
    start: StartKind = "uniform",
) -> torch.Tensor:
    """Inverse adversarial example (UIAT / DHAT step 2).

    Signed-gradient *descent* on
    ``CE(f(x'), y) + KL(p(x) || p(x')) - KL(p(x_adv) || p(x'))`` (batch means),
    i.e. towards higher true-class confidence, closer to the clean prediction
    and away from the adversarial one. The clean and adversarial predictions
    are computed once by the caller and held fixed.
    """
    p_clean = F.softmax(logits_clean.detach(), dim=1)
    p_adv = F.softmax(logits_adv.detach(), dim=1)
    batch = x.shape[0]

    def objective(logits: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits, dim=1)
        return (
            F.cross_entropy(logits, y, reduction="sum")
            + F.kl_div(log_p, p_clean, reduction="sum")
            - F.kl_div(log_p, p_adv, reduction="sum")
        ) / batch

    x_inv, _ = signed_gradient_attack(model, x, objective, eps, step_size, steps, start=start, ascend=False)
    return x_inv
