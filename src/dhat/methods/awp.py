"""Adversarial Weight Perturbation (Wu, Xia, Wang, NeurIPS 2020) as a wrapper around any objective.

Behaviour follows the paper and its public code (github csdongxian/AWP), as
summarised in docs/design.md, "The baselines". Per batch:

1. the base method crafts its examples ``x'`` once (:meth:`TrainingMethod.craft`);
2. a proxy copy of the model takes one SGD step (lr ``proxy_lr``, 0.01 in the
   public code, no momentum) that *increases* the base loss at the fixed ``x'``;
3. for every conv/linear weight (parameters named ``weight`` with ``dim >= 2``;
   batch-norm weights and biases are 1-D and left alone)
   ``v = ||w|| * d / (||d|| + 1e-20)`` with ``d = w_proxy - w``;
4. ``w += gamma * v``; the base loss at the same ``x'`` is back-propagated and the
   optimiser steps; then ``w -= gamma * v`` restores the unperturbed weights
   (the optimiser's update is kept).

During the first ``warmup_epochs`` epochs the base method trains alone (TRADES-AWP
uses 10). One registered method, ``awp``; the catalog's ``pgd_at_awp`` (gamma 0.01),
``trades_awp`` (gamma 0.005, 10 warm-up epochs) and ``dhat_awp`` (DHAT's objective, gamma 0.01)
are YAML sections that set its ``base_method``.

The shared plumbing of methods that wrap a base method is :mod:`dhat.methods.wrapping`.
"""

from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

# Imported for their side effect: the base methods must be registered before the wrappers
# below look them up (needs_masks is read from the base class at class-creation time).
from dhat.config import check_non_negative
from dhat.methods import dhat as _dhat  # noqa: F401
from dhat.methods import pgd_at as _pgd_at  # noqa: F401
from dhat.methods import trades as _trades  # noqa: F401
from dhat.methods.base import Batch, StepOutput, register_method
from dhat.methods.wrapping import MethodWrapper, WrapperParams

__all__ = [
    "AWPParams",
    "AdversarialWeightPerturbation",
    "weight_perturbation",
    "perturbed_parameters",
]

AWP_EPS = 1e-20  # the public code's guard against a zero proxy displacement


def perturbed_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The parameters AWP perturbs: conv/linear weights (named ``weight``, ``dim >= 2``).

    Batch-norm weights and all biases are 1-D, so ``dim >= 2`` excludes them, as in the
    public code's ``len(w.size()) > 1 and 'weight' in name`` filter.
    """
    return [
        (name, param)
        for name, param in model.named_parameters()
        if param.requires_grad and param.ndim >= 2 and name.rsplit(".", 1)[-1] == "weight"
    ]


@torch.no_grad()
def weight_perturbation(model: nn.Module, proxy: nn.Module) -> dict[str, torch.Tensor]:
    """Per layer ``v = ||w|| * d / (||d|| + 1e-20)`` with ``d = w_proxy - w`` (layer-wise, not global).

    ``gamma * v`` then has norm ``gamma * ||w||`` (up to the 1e-20 guard): the perturbation
    is relative to each layer's weight norm.
    """
    proxy_params = dict(proxy.named_parameters())
    directions: dict[str, torch.Tensor] = {}
    for name, weight in perturbed_parameters(model):
        displacement = proxy_params[name] - weight
        directions[name] = weight.norm() * displacement / (displacement.norm() + AWP_EPS)
    return directions


@dataclass
class AWPParams(WrapperParams):
    """AWP parameters: ``base_method`` (the wrapped method, PGD-AT by default), ``gamma`` (relative
    perturbation size), ``warmup_epochs`` (AWP off before this 0-based epoch), ``proxy_lr`` (the
    proxy's SGD step), ``base`` (the wrapped method's parameters)."""

    base_method: str = "pgd_at"
    gamma: float = 0.01
    warmup_epochs: int = 0
    proxy_lr: float = 0.01

    def validate(self, section: str) -> AWPParams:
        check_non_negative(self, section, "gamma")
        if int(self.warmup_epochs) < 0:
            raise ValueError(f"{section}.warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.proxy_lr <= 0:
            raise ValueError(f"{section}.proxy_lr must be > 0, got {self.proxy_lr}")
        self.warmup_epochs = int(self.warmup_epochs)
        super().validate(section)
        return self


@register_method("awp")
class AdversarialWeightPerturbation(MethodWrapper):
    """AWP around the base method named by ``Params.base_method`` (see the module docstring)."""

    Params: ClassVar[type] = AWPParams
    #: The proxy step would perturb each rank's weights by its own share of the batch, so the
    #: ranks' weights would drift apart; AWP trains in one process (``training.devices: 1``).
    supports_data_parallel = False

    def __init__(self, params: AWPParams) -> None:
        super().__init__(params)
        # The proxy is deep-copied once per model and refreshed with load_state_dict each batch
        # (the public code also keeps one proxy network); the weak reference avoids keeping a
        # finished model alive and detects a different model being trained.
        self._proxy: nn.Module | None = None
        self._proxy_source: weakref.ReferenceType[nn.Module] | None = None

    def active(self, epoch: int) -> bool:
        """Whether weights are perturbed in 0-based ``epoch`` (off during the warm-up)."""
        return epoch >= self.params.warmup_epochs

    def _proxy_of(self, model: nn.Module) -> nn.Module:
        if self._proxy is None or self._proxy_source is None or self._proxy_source() is not model:
            self._proxy = copy.deepcopy(model)
            self._proxy_source = weakref.ref(model)
        else:
            self._proxy.load_state_dict(model.state_dict())
        return self._proxy

    def perturbation(self, model: nn.Module, batch: Batch, crafted: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``v`` per perturbed weight, from one proxy SGD step that *increases* the base loss at ``crafted``."""
        proxy = self._proxy_of(model)
        proxy.train()
        proxy_optimizer = torch.optim.SGD(proxy.parameters(), lr=self.params.proxy_lr)
        proxy_optimizer.zero_grad(set_to_none=True)
        # Descending on the negated loss is ascending on the loss.
        (-self.base.loss_on(proxy, batch, crafted).loss).backward()
        proxy_optimizer.step()
        return weight_perturbation(model, proxy)

    def train_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch) -> StepOutput:
        if not self.active(batch.epoch):
            return self.base.train_step(model, optimizer, batch)
        crafted = self.base.craft(model, batch)  # once: the proxy and the perturbed step share x'
        directions = self.perturbation(model, batch, crafted)
        params = dict(perturbed_parameters(model))
        gamma = self.params.gamma
        with torch.no_grad():
            for name, v in directions.items():
                params[name].add_(v, alpha=gamma)
        try:
            output = self.base.loss_on(model, batch, crafted)
            self.optimise(optimizer, output.loss)
        finally:
            # Restore even if the step fails, so a caller never sees perturbed weights.
            with torch.no_grad():
                for name, v in directions.items():
                    params[name].sub_(v, alpha=gamma)
        return output
