"""The adversarial and the inverse adversarial example of a batch, as UIAT and DHAT both craft them.

The inverse example is perturbed to make the true class *more* likely (docs/design.md, "The
method", step 2); UIAT aligns the adversarial prediction with it, DHAT with its debiased logits.
"""

from __future__ import annotations

import torch
from torch import nn

from dhat.attacks import batchnorm_mode, inverse_attack
from dhat.methods.base import AttackSettings, Batch

__all__ = ["craft_adversarial_and_inverse"]


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
