"""Loss terms of DHAT and UIAT as pure functions of logits.

Notation: ``p(z) = softmax(z)``; ``KL(P || Q) = sum P log(P / Q)``.  PyTorch's
``kl_div(log_softmax(a), softmax(b))`` is ``KL(p(b) || p(a))``; the helper
:func:`kl_between_logits` spells the direction out to avoid that trap.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "kl_between_logits",
    "debiased_logits",
    "dhlr_loss",
    "floe_loss",
    "FLOE_VARIANTS",
    "DHLR_FORMS",
    "top_wrong_class",
]

DhlrForm = Literal["reference", "paper"]
FloeVariant = Literal["paper", "reference", "bounded"]
DHLR_FORMS: tuple[str, ...] = ("reference", "paper")
FLOE_VARIANTS: tuple[str, ...] = ("paper", "reference", "bounded")


def kl_between_logits(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Batch-mean ``KL(p(p_logits) || p(q_logits))``; gradients flow into both arguments."""
    return F.kl_div(F.log_softmax(q_logits, dim=1), F.softmax(p_logits, dim=1), reduction="batchmean")


def debiased_logits(z_inv: torch.Tensor, z_bg: torch.Tensor) -> torch.Tensor:
    """``z* = z_inv - z_bg``: the inverse example's logits with the background's share removed."""
    return z_inv - z_bg


def dhlr_loss(z_star: torch.Tensor, z_adv: torch.Tensor, form: DhlrForm = "reference") -> torch.Tensor:
    """Debiased High-confidence Logit Regularisation (DHLR).

    ``reference`` is what the public DHAT code computes,
    ``kl_div(log softmax(z*), softmax(z_adv), batchmean) = KL(p(z_adv) || p(z*))``;
    ``paper`` is the paper's written ``KL(p(z*) || p(z_adv))``. Nothing is detached.
    """
    if form == "reference":
        return kl_between_logits(z_adv, z_star)
    if form == "paper":
        return kl_between_logits(z_star, z_adv)
    raise ValueError(f"dhlr_form must be one of {', '.join(DHLR_FORMS)}, got {form!r}")


def floe_loss(
    z_inv: torch.Tensor, z_bg: torch.Tensor, variant: FloeVariant = "bounded", p: float = 2.0
) -> torch.Tensor:
    """Foreground Logit Orthogonal Enhancement (FLOE): push ``z_inv`` away from the background direction.

    Variants (see the project docs for the measured comparison):

    * ``paper`` (eq. 10): ``-mean_i || z_inv_i - proj_{z_bg_i}(z_inv_i) ||_p``. Minimising it
      grows the component of ``z_inv`` orthogonal to ``z_bg`` without bound.
    * ``reference`` (public code): ``+|| Z_inv - (Z_inv Z_bg^T / ||Z_bg Z_bg^T||_F) Z_bg ||_F / B``
      on the batch matrices, with a positive sign.
    * ``bounded``: ``mean_i cos^2(z_inv_i, z_bg_i)`` in ``[0, 1]``, zero when the two logit
      vectors are orthogonal: the paper's aim without an unbounded objective.
    """
    if variant == "paper":
        scale = (z_inv * z_bg).sum(dim=1, keepdim=True) / (z_bg * z_bg).sum(dim=1, keepdim=True).clamp_min(1e-12)
        residual = z_inv - scale * z_bg
        return -torch.linalg.vector_norm(residual, ord=p, dim=1).mean()
    if variant == "reference":
        gram = z_bg @ z_bg.T
        coefficients = (z_inv @ z_bg.T) / torch.linalg.matrix_norm(gram).clamp_min(1e-12)
        residual = z_inv - coefficients @ z_bg
        return torch.linalg.matrix_norm(residual) / z_inv.shape[0]
    if variant == "bounded":
        return F.cosine_similarity(z_inv, z_bg, dim=1, eps=1e-12).pow(2).mean()
    raise ValueError(f"floe variant must be one of {', '.join(FLOE_VARIANTS)}, got {variant!r}")


def top_wrong_class(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The highest-scoring class other than ``y`` for each row of ``logits``.

    Equals the public MART/FSR rule "top-1 if it is wrong, else top-2".
    """
    masked = logits.detach().scatter(1, y[:, None], float("-inf"))
    return masked.argmax(dim=1)
