"""MART: Misclassification-Aware adveRsarial Training (Wang et al., ICLR 2020).

Follows the loss of the authors' public code (github YisenWang/MART, ``mart_loss``),
as summarised in docs/design.md, "The baselines"::

    BCE(x', y) = CE(f(x'), y) - log(1.0001 - p_{y''}(x'))      (batch mean)
    loss       = BCE(x', y) + beta * mean_i [ KL_i(p(x) || p(x')) * (1 - p_y(x_i)) ]

``y''`` is the most probable *wrong* class of ``p(x')``; nothing is detached (the
clean term weight ``1 - p_y(x)`` carries gradient too, as in the public code).
The inner attack maximises cross-entropy from ``x + 0.001 N(0, I)`` with the model
in eval mode, 10 steps of 2/255 in an 8/255 ball.

``beta`` defaults to 6, the public code's value (used there for WRN-34-10); the MART
paper's ResNet-18 runs use 5, which an environment's YAML sets where it trains a
ResNet-18.

Small differences from the public code, all below float32 noise in practice: the
code adds ``1e-12`` inside two logarithms and weighs by ``1.0000001 - p_y``; here the
logarithms come from ``log_softmax`` (stable without an offset) and the weight is
``1 - p_y`` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dhat.losses import top_wrong_class
from dhat.methods.base import Batch, StepOutput, TrainingMethod, register_method
from dhat.methods.trades import TRADESParams

__all__ = ["MART", "MARTParams", "mart_loss"]


def mart_loss(
    logits_clean: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor, beta: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """MART's loss from clean and adversarial logits; returns the loss and its (detached) parts.

    Parts: ``ce_adv`` (``CE(f(x'), y)``), ``boost`` (``-log(1.0001 - p_{y''}(x'))``) and
    ``kl_weighted`` (the misclassification-weighted KL before ``beta``).
    """
    log_p_adv = F.log_softmax(logits_adv, dim=1)
    p_adv = log_p_adv.exp()
    ce = F.nll_loss(log_p_adv, y)
    wrong = top_wrong_class(logits_adv, y)
    # 1.0001 keeps the logarithm finite when the wrong class takes all the mass.
    boost = -torch.log(1.0001 - p_adv.gather(1, wrong[:, None]).squeeze(1)).mean()
    log_p_clean = F.log_softmax(logits_clean, dim=1)
    p_clean = log_p_clean.exp()
    kl_per_sample = (p_clean * (log_p_clean - log_p_adv)).sum(dim=1)
    # Samples the model already gets wrong on clean data (low p_y) weigh more.
    weight = 1.0 - p_clean.gather(1, y[:, None]).squeeze(1)
    robust = (kl_per_sample * weight).mean()
    loss = ce + boost + beta * robust
    return loss, {"ce_adv": ce.detach(), "boost": boost.detach(), "kl_weighted": robust.detach()}


@dataclass
class MARTParams(TRADESParams):
    """MART hyper-parameters: TRADES' inner attack settings (public MART code: CE-PGD from
    x + 0.001 N(0, I), model.eval() while crafting) and the weight ``beta`` of the robust term."""


@register_method("mart")
class MART(TrainingMethod):
    """``BCE(f(x'), y) + beta * mean_i KL_i(p(x) || p(x')) (1 - p_y(x_i))``."""

    Params = MARTParams

    def craft(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """``{"x_adv"}``: CE-PGD examples (per-sample radius ``batch.attack_eps`` when set)."""
        return {"x_adv": self.params.attack.craft(model, batch.x, batch.y, eps=batch.attack_eps)}

    def loss_on(self, model: nn.Module, batch: Batch, crafted: dict[str, torch.Tensor]) -> StepOutput:
        """The MART loss at the fixed examples ``crafted["x_adv"]``."""
        # Clean then adversarial forward in train mode, the public code's order.
        logits_clean = model(batch.x)
        logits_adv = model(crafted["x_adv"])
        loss, parts = mart_loss(logits_clean, logits_adv, batch.y, self.params.beta)
        return StepOutput(loss=loss, logits=logits_adv, parts=parts)
