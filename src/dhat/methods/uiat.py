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

from dhat.config import check_non_negative
from dhat.losses import kl_between_logits
from dhat.methods.base import AttackSettings, Batch, StepOutput, TrainingMethod, attack_defaults, register_method
from dhat.methods.inverse_examples import craft_adversarial_and_inverse


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
