"""SGLR: self-guided label refinement of adversarial training.

Follows the public code of "Soften to Defend: Towards Adversarial Robustness via
Self-Guided Label Smoothing" (Li & Yu; github devicerxx/SGLS, ``losses/loss.py``),
the SGLR baseline of the DHAT paper (docs/design.md, "The baselines"):

* before the start epoch ``es``: plain ``CE(f(x'), y)`` (PGD-AT);
* from ``es`` on, every training image ``i`` carries a soft label ``q_i`` (one-hot of
  its label until first refined), updated each time the image is drawn::

      q_i <- m q_i + (1 - m) (0.2 p(x_i) + 0.8 p(x'_i))      (detached)

  and the loss is the soft-label cross-entropy ``mean_i sum_k -q_ik log p_k(x'_i)``.

Order: ``q_i`` is updated *before* the loss is computed, and the loss uses the updated
label, as the public code does (and as self-adaptive training, Huang et al. 2020,
which it builds on). The model's current prediction therefore enters the target with
weight ``1 - m`` from the very first soft-label step instead of one visit later; since
``q`` is detached this only moves the target, never adds a gradient path.

Soft labels are kept by dataset index (``Batch.indices``) in a tensor sized to the
training set, created lazily on the batch's device when the soft phase first runs and
reset when a new run starts (epoch 0). Both predictions are taken in train mode, the
adversarial one first (the public code's order); the clean forward runs without
gradient because its output is detached anyway.

``es``: ``start_epoch`` (0-based: the first epoch trained on soft labels) or, when not
set, ``round(start_fraction * num_epochs)`` (default 0.9: the last 10% of the epochs,
which with the paper's 100-epoch recipe coincides with the second learning-rate decay).
The public script uses ``--sgls-es 90`` with 200 epochs and 1-based epochs compared by
``epoch < es``, i.e. soft labels from the 90th epoch of 200; an environment that wants
that schedule sets ``start_epoch: 89``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dhat.config import check_non_negative
from dhat.methods.base import (
    Batch,
    EpochContext,
    EvalModeAttackParams,
    StepOutput,
    TrainingMethod,
    register_method,
)

__all__ = ["SGLR", "SGLRParams", "soft_label_cross_entropy"]


def soft_label_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Batch mean of ``sum_k -targets_k log softmax(logits)_k``."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


@dataclass
class SGLRParams(EvalModeAttackParams):
    """SGLR hyper-parameters (public-code defaults: eval-mode attack, m = 0.9, targets 0.2 clean + 0.8 adversarial)."""

    momentum: float = 0.9
    clean_weight: float = 0.2
    adv_weight: float = 0.8
    start_fraction: float = 0.9
    start_epoch: int | None = None

    def validate(self, section: str) -> SGLRParams:
        self.attack = self.attack.validate(f"{section}.attack")
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"{section}.momentum must be in [0, 1], got {self.momentum}")
        check_non_negative(self, section, "clean_weight", "adv_weight")
        # The mix must be a distribution, or the soft labels drift off the simplex.
        if not math.isclose(self.clean_weight + self.adv_weight, 1.0, abs_tol=1e-6):
            raise ValueError(
                f"{section}.clean_weight + {section}.adv_weight must be 1, got {self.clean_weight} + {self.adv_weight}"
            )
        if not 0.0 <= self.start_fraction <= 1.0:
            raise ValueError(f"{section}.start_fraction must be in [0, 1], got {self.start_fraction}")
        if self.start_epoch is not None:
            if isinstance(self.start_epoch, bool) or not isinstance(self.start_epoch, int) or self.start_epoch < 0:
                raise ValueError(
                    f"{section}.start_epoch must be an integer >= 0 (0-based) or null, got {self.start_epoch!r}"
                )
        return self

    def first_soft_epoch(self, num_epochs: int) -> int:
        """The 0-based epoch from which soft labels are used."""
        if self.start_epoch is not None:
            return self.start_epoch
        # Same rounding as the learning-rate milestones of the training engine.
        return math.floor(self.start_fraction * num_epochs + 0.5)


@register_method("sglr")
class SGLR(TrainingMethod):
    """PGD-AT, then soft-label cross-entropy on ``x'`` with per-sample self-refined labels.

    Unlike the stateless methods, SGLR does not split :meth:`craft` / :meth:`loss_on`:
    its loss updates the soft labels, and wrappers that evaluate the loss twice per batch
    at the same examples (adversarial weight perturbation) would refine them twice.
    """

    Params = SGLRParams

    def __init__(self, params: SGLRParams) -> None:
        super().__init__(params)
        self.soft_labels: torch.Tensor | None = None  # [N, K], rows valid where ``initialised``
        self.initialised: torch.Tensor | None = None  # [N] bool
        self._size_hint = 0
        self._epoch_start: tuple[torch.Tensor, torch.Tensor] | None = None  # the table before this epoch's steps

    def reset_state(self) -> None:
        """Forget every soft label (a new training run starts)."""
        self.soft_labels = None
        self.initialised = None

    def state_dict(self) -> dict[str, Any]:
        """The soft-label table and which rows of it are in use."""
        return {"soft_labels": self.soft_labels, "initialised": self.initialised}

    def load_state_dict(self, state: Mapping[str, Any], model: nn.Module) -> None:
        device = next(model.parameters()).device
        self.soft_labels, self.initialised = (None if state.get(k) is None else state[k].to(device)
                                              for k in ("soft_labels", "initialised"))

    def on_epoch_start(self, context: EpochContext) -> None:
        if context.epoch == 0:
            self.reset_state()
        self._size_hint = len(context.train_set) if context.train_set is not None else 0
        has_table = self.soft_labels is not None and self.initialised is not None
        self._epoch_start = (self.soft_labels.clone(), self.initialised.clone()) if has_table else None

    def synchronise(self, distributed: Any) -> None:
        """Each rank refined the soft labels of its own images this epoch: sum the ranks' changes.

        Every image is in exactly one rank's share of an epoch, so the sum of the changes is
        the table one process would hold. The soft phase starts in the same epoch on every rank
        (each holds images of every batch), so either all ranks have a table or none has.
        """
        if self.soft_labels is None or self.initialised is None:
            return
        table, seen = self.soft_labels, self.initialised
        start_table, start_seen = self._epoch_start or (torch.zeros_like(table), torch.zeros_like(seen))
        self.soft_labels = start_table + distributed.all_reduce_sum(table - start_table)
        self.initialised = distributed.all_reduce_sum(seen.to(torch.int32)) > 0

    def _state(self, indices: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
        """The soft-label table with the rows of ``indices`` ready (one-hot of ``y`` where first seen).

        The table is created on ``y``'s device, moved there if it lives elsewhere, and grown
        when an index lies beyond it (objectives called without the epoch hooks).
        """
        device = y.device
        indices = indices.to(device)
        # The epoch hook gives the training-set size; reading indices.max() (a host sync) is the fallback.
        needed = self._size_hint or (int(indices.max()) + 1 if indices.numel() else 0)
        if self.soft_labels is None or self.initialised is None:
            self.soft_labels = torch.zeros(needed, num_classes, device=device)
            self.initialised = torch.zeros(needed, dtype=torch.bool, device=device)
        if self.soft_labels.shape[1] != num_classes:
            raise ValueError(
                f"sglr: the model has {num_classes} classes but the soft labels were built "
                f"for {self.soft_labels.shape[1]}"
            )
        if self.soft_labels.device != device:
            self.soft_labels = self.soft_labels.to(device)
            self.initialised = self.initialised.to(device)
        if needed > self.soft_labels.shape[0]:
            extra = needed - self.soft_labels.shape[0]
            self.soft_labels = torch.cat([self.soft_labels, self.soft_labels.new_zeros(extra, num_classes)])
            self.initialised = torch.cat([self.initialised, self.initialised.new_zeros(extra)])
        # Rows seen for the first time start from the one-hot label (no host sync: a masked write).
        fresh = ~self.initialised[indices]
        one_hot = F.one_hot(y, num_classes).to(self.soft_labels.dtype)
        self.soft_labels[indices] = torch.where(fresh[:, None], one_hot, self.soft_labels[indices])
        self.initialised[indices] = True
        return self.soft_labels

    def objective(self, model: nn.Module, batch: Batch) -> StepOutput:
        p = self.params
        x_adv = p.attack.craft(model, batch.x, batch.y, eps=batch.attack_eps)
        logits = model(x_adv)
        hard_ce = F.cross_entropy(logits, batch.y)
        if batch.epoch < p.first_soft_epoch(batch.num_epochs):
            parts = {"ce_adv": hard_ce.detach(), "soft_ce": hard_ce.detach()}
            return StepOutput(loss=hard_ce, logits=logits, parts=parts)
        with torch.no_grad():
            p_clean = F.softmax(model(batch.x), dim=1)
            p_adv = F.softmax(logits.detach(), dim=1)
            table = self._state(batch.indices, batch.y, logits.shape[1])
            index = batch.indices.to(table.device)
            target = p.clean_weight * p_clean + p.adv_weight * p_adv
            updated = p.momentum * table[index] + (1.0 - p.momentum) * target
            table[index] = updated
        loss = soft_label_cross_entropy(logits, updated)
        return StepOutput(loss=loss, logits=logits, parts={"ce_adv": hard_ce.detach(), "soft_ce": loss.detach()})
