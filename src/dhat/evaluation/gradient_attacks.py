"""The per-batch white-box attacks of the suite, registered in :mod:`dhat.evaluation.registry`.

FGSM (one signed step of the radius), PGD-k (one run of the longest requested length from a
uniform random start; the shorter lengths are its intermediate iterates) and CW-inf (PGD on
the logit margin). The registration order is the crafting order: PGD and CW both seed batch
``i`` with ``config.seed + i``, so they start from the same point.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import nn

from dhat.attacks import cross_entropy_loss, cw_linf, fgsm, signed_gradient_attack
from dhat.evaluation.registry import register_attack, steps

if TYPE_CHECKING:
    from dhat.evaluation.config import AttackSuiteConfig

__all__ = ["craft_fgsm", "craft_pgd", "craft_cw"]


@register_attack("fgsm", display="FGSM")
def craft_fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: AttackSuiteConfig, names: list[str],
               batch_index: int) -> Mapping[str, torch.Tensor]:
    return {"fgsm": fgsm(model, x, y, config.eps)}


@register_attack("pgd", display="PGD-{steps}", parametrised=True, allowed=lambda config: config.pgd_names())
def craft_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: AttackSuiteConfig, names: list[str],
              batch_index: int) -> Mapping[str, torch.Tensor]:
    lengths = sorted(steps(n) for n in names)
    torch.manual_seed(config.seed + batch_index)
    _, iterates = signed_gradient_attack(model, x, cross_entropy_loss(y), config.eps, config.step_size, lengths[-1],
                                         start="uniform", record_at=lengths)
    return {f"pgd{k}": iterates[k] for k in lengths}


@register_attack("cw", display="CW-inf", header="CW")
def craft_cw(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: AttackSuiteConfig, names: list[str],
             batch_index: int) -> Mapping[str, torch.Tensor]:
    torch.manual_seed(config.seed + batch_index)
    return {"cw": cw_linf(model, x, y, config.eps, config.step_size, config.cw_steps)}


# AutoAttack runs on its own (a fixed subset, through pyautoattack: dhat.evaluation.autoattack), not per batch.
register_attack("autoattack", display="AutoAttack", header="AA", gradient=False)(None)
