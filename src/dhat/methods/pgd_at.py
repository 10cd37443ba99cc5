"""PGD adversarial training (Madry et al., 2018)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from dhat.methods.base import AttackSettings, Batch, StepOutput, TrainingMethod, register_method


@register_method("pgd_at")
class PGDAdversarialTraining(TrainingMethod):
    """``CE(f(x'), y)`` with ``x'`` from CE-PGD (10 x 2/255, eps 8/255, uniform start)."""

    @dataclass
    class Params:
        attack: AttackSettings = field(default_factory=AttackSettings)

        def validate(self, section: str) -> PGDAdversarialTraining.Params:
            self.attack = self.attack.validate(f"{section}.attack")
            return self

    def craft(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """``{"x_adv"}``: CE-PGD examples (per-sample radius ``batch.attack_eps`` when set)."""
        return {"x_adv": self.params.attack.craft(model, batch.x, batch.y, eps=batch.attack_eps)}

    def loss_on(self, model: nn.Module, batch: Batch, crafted: dict[str, torch.Tensor]) -> StepOutput:
        """``CE(f(x'), y)`` at the fixed examples ``crafted["x_adv"]``."""
        logits = model(crafted["x_adv"])
        loss = F.cross_entropy(logits, batch.y)
        return StepOutput(loss=loss, logits=logits, parts={"ce_adv": loss.detach()})
