"""UIAT: adversarial training aligned with inverse adversarial examples (Dong et al., 2023).

No official code is public; this follows the DHAT authors' re-implementation
(docs/design.md, "The baselines"): ``CE(f(x'), y) + beta * KL(p(x') || p(x_inv))`` with
``beta = 3.5`` and an inverse radius of 8/255.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from dhat.attacks import batchnorm_mode, inverse_attack
from dhat.config import check_non_negative
from dhat.losses import kl_between_logits
from dhat.methods.base import AttackSettings, Batch, StepOutput, TrainingMethod, attack_defaults, register_method


def craft_adversarial_and_inverse(
    model: nn.Module, batch: Batch, attack: AttackSettings, inverse: AttackSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two examples UIAT and DHAT train on: ``x_adv`` (CE-PGD) and ``x_inv`` (inverse attack).

    The clean and adversarial predictions that steer the inverse attack are computed
    once, without gradient, in the inverse attack's batch-norm mode.
    """
    x_adv = attack.craft(model, batch.x, batch.y, eps=batch.attack_eps)
    with batchnorm_mode(model, inverse.bn_mode):
        with torch.no_grad():
            logits_clean = model(batch.x)
            logits_adv = model(x_adv)
        x_inv = inverse_attack(
            model,
            batch.x,
            batch.y,
            logits_clean,
            logits_adv,
            eps=float(inverse.eps),
            step_size=float(inverse.step_size),
            steps=inverse.steps,
            start=inverse.start,
        )
    return x_adv, x_inv


@register_method("uiat")
class UIAT(TrainingMethod):
    """``CE(z_adv, y) + beta * KL(p(z_adv) || p(z_inv))``, nothing detached."""

    @dataclass
    class Params:
        attack: AttackSettings = field(default_factory=AttackSettings)
        inverse: AttackSettings = field(default_factory=attack_defaults(eps="8/255"))
        beta: float = 3.5

        def validate(self, section: str) -> UIAT.Params:
            self.attack = self.attack.validate(f"{section}.attack")
            self.inverse = self.inverse.validate(f"{section}.inverse")
            check_non_negative(self, section, "beta")
            return self

    def craft(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """``{"x_adv", "x_inv"}``: the adversarial and the inverse example."""
        x_adv, x_inv = craft_adversarial_and_inverse(model, batch, self.params.attack, self.params.inverse)
        return {"x_adv": x_adv, "x_inv": x_inv}

    def loss_on(self, model: nn.Module, batch: Batch, crafted: dict[str, torch.Tensor]) -> StepOutput:
        """The UIAT loss at the fixed examples ``crafted``."""
        z_adv = model(crafted["x_adv"])
        z_inv = model(crafted["x_inv"])
        ce = F.cross_entropy(z_adv, batch.y)
        alignment = kl_between_logits(z_adv, z_inv)
        loss = ce + self.params.beta * alignment
        return StepOutput(loss=loss, logits=z_adv, parts={"ce_adv": ce.detach(), "kl_inv": alignment.detach()})
