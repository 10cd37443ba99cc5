"""TRADES: TRadeoff-inspired Adversarial DEfense via Surrogate-loss minimisation (Zhang et al., 2019).

Behaviour follows the paper and its public code (github yaodongyu/TRADES), as
summarised in docs/design.md, "The baselines":

* loss ``CE(f(x), y) + beta * KL(p(x) || p(x'))``, KL averaged over the batch
  ("batchmean"), nothing detached (gradients reach both the clean and the
  adversarial branch);
* inner attack: signed-gradient ascent on ``KL(p(x) || p(x'))`` with the clean
  prediction held fixed, started at ``x + 0.001 N(0, I)``, 10 steps of 2/255 in
  the 8/255 ball, model in eval mode while crafting; beta 6.

The loss helper :func:`trades_loss` also takes one ``beta`` per sample and an
optional normalisation, which CFA's class-wise TRADES weight (CCR) reuses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from dhat.attacks import batchnorm_mode, kl_to_reference_loss, signed_gradient_attack
from dhat.config import check_non_negative
from dhat.methods.base import AttackSettings, Batch, StepOutput, TrainingMethod, attack_defaults, register_method

__all__ = ["TRADES", "TRADESParams", "trades_loss", "craft_trades_examples"]


def trades_loss(
    logits_clean: torch.Tensor,
    logits_adv: torch.Tensor,
    y: torch.Tensor,
    beta: float | torch.Tensor,
    normalise: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The TRADES objective ``mean_i [CE_i + beta_i KL_i]`` with ``KL_i = KL(p(x_i) || p(x'_i))``.

    Args:
        logits_clean: ``f(x)``, ``[B, K]``; not detached (TRADES back-propagates through it).
        logits_adv: ``f(x')``, ``[B, K]``.
        y: labels ``[B]``.
        beta: the trade-off weight, a number or one weight per sample ``[B]``.
        normalise: divide each sample's term by ``1 + beta_i``, i.e.
            ``(1 - b_i) CE_i + b_i KL_i`` with ``b_i = beta_i / (1 + beta_i)``: the convex form
            CFA's public code trains TRADES with (its class-wise weight ``b_c``).

    Returns:
        ``(loss, mean CE, mean KL)``. With a scalar ``beta`` and no normalisation the loss is
        exactly ``CE(f(x), y) + beta * kl_div(..., reduction="batchmean")``.
    """
    ce = F.cross_entropy(logits_clean, y, reduction="none")
    # Per-sample KL(p(x) || p(x')); summing over classes then averaging over the batch is "batchmean".
    kl = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits_clean, dim=1), reduction="none").sum(dim=1)
    weight = torch.as_tensor(beta, dtype=ce.dtype, device=ce.device)
    if weight.ndim not in (0, 1) or (weight.ndim == 1 and weight.shape[0] != ce.shape[0]):
        raise ValueError(
            f"trades beta must be a number or one value per sample [{ce.shape[0]}], got shape {tuple(weight.shape)}"
        )
    per_sample = ce + weight * kl
    if normalise:
        per_sample = per_sample / (1.0 + weight)
    return per_sample.mean(), ce.mean(), kl.mean()


def craft_trades_examples(
    model: nn.Module, x: torch.Tensor, attack: AttackSettings, eps: torch.Tensor | None = None
) -> torch.Tensor:
    """TRADES' inner maximisation of ``KL(p(x) || p(x'))`` (labels unused).

    The clean prediction ``p(x)`` is computed once, without gradient, in the attack's
    batch-norm mode and held fixed during the iterations (as in the public code, where
    it is recomputed every step under the same eval-mode weights, i.e. the same value).
    ``eps`` optionally gives one radius per sample (CFA); the step size then scales with it,
    as in :meth:`AttackSettings.craft`.
    """
    radius, step = attack.radius_and_step(eps)
    with batchnorm_mode(model, attack.bn_mode):
        with torch.no_grad():
            reference = F.softmax(model(x), dim=1)
        x_adv, _ = signed_gradient_attack(
            model, x, kl_to_reference_loss(reference), radius, step, attack.steps, start=attack.start
        )
    return x_adv


@dataclass
class TRADESParams:
    """TRADES hyper-parameters (CIFAR-10 defaults of the public code)."""

    # TRADES crafts in eval mode from a tiny Gaussian start (public TRADES code).
    attack: AttackSettings = field(default_factory=attack_defaults(start="normal", bn_mode="eval"))
    beta: float = 6.0

    def validate(self, section: str) -> TRADESParams:
        self.attack = self.attack.validate(f"{section}.attack")
        check_non_negative(self, section, "beta")
        return self


@register_method("trades")
class TRADES(TrainingMethod):
    """``CE(f(x), y) + beta * KL(p(x) || p(x'))``; train accuracy is reported on ``x'``."""

    Params = TRADESParams

    def craft(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """``{"x_adv"}`` from the KL attack (per-sample radius ``batch.attack_eps`` when set)."""
        return {"x_adv": craft_trades_examples(model, batch.x, self.params.attack, eps=batch.attack_eps)}

    def loss_on(
        self,
        model: nn.Module,
        batch: Batch,
        crafted: dict[str, torch.Tensor],
        sample_beta: torch.Tensor | None = None,
        normalise: bool = False,
    ) -> StepOutput:
        """The TRADES loss at fixed ``crafted["x_adv"]``.

        ``sample_beta`` (``[B]``) replaces ``params.beta`` per sample and ``normalise`` selects
        the convex form (see :func:`trades_loss`); CFA's class-wise weight uses both.
        """
        # One clean forward serves CE and KL (the public code runs it twice; in train mode both
        # passes see the same batch, so the values agree).
        logits_clean = model(batch.x)
        logits_adv = model(crafted["x_adv"])
        beta = self.params.beta if sample_beta is None else sample_beta
        loss, ce, kl = trades_loss(logits_clean, logits_adv, batch.y, beta, normalise=normalise)
        return StepOutput(loss=loss, logits=logits_adv, parts={"ce_clean": ce.detach(), "kl_adv": kl.detach()})
