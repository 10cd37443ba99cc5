"""CFA: Class-wise calibrated Fair Adversarial training (Wei, Wang, Guo, Wang; CVPR 2023), as a wrapper.

Behaviour follows the paper and its public code (github PKU-ML/CFA), as summarised
in docs/design.md, "The baselines":

* **CCM** (class-wise calibrated margin): from 0-based epoch ``ccm_start_epoch``
  (10) on, a sample of class ``c`` is attacked within radius
  ``eps_c = (lambda1 + r_c) * eps``, where ``r_c`` is class ``c``'s robust
  *training* accuracy over the previous epoch (accumulated from the logits the base
  objective returns for its adversarial inputs). Before that epoch the radius is
  the base method's ``eps``. The radius reaches the base objective through
  ``Batch.attack_eps``; the attack step scales with it
  (:meth:`AttackSettings.craft`).
* **CCR** (class-wise calibrated regularisation, TRADES mode only): the TRADES
  objective in CFA's convex form ``(1 - b_i) CE_i + b_i KL_i`` per sample, with
  ``b_c = (lambda2 + r_c) beta / (1 + (lambda2 + r_c) beta)`` from
  ``ccm_start_epoch`` on, and ``b = beta / (1 + beta)`` before (the public code uses
  this convex form throughout TRADES mode, i.e. TRADES scaled by ``1 / (1 + beta)``).
* **FAWA** (fairness-aware weight averaging): an exponential moving average of the
  weights (decay 0.88; floating-point buffers such as batch-norm statistics are
  averaged too, integer buffers copied) updated at the end of an epoch only when the
  trained model's *worst-class* robust accuracy (PGD-10, eval mode) on the held-out
  validation split reaches ``fawa_threshold`` (0.2). The first qualifying epoch
  initialises the average with the current weights.

:meth:`ClassWiseCalibratedTraining.evaluation_model` returns the FAWA average (the
model itself until the first update), so the training engine validates, selects and
saves the *averaged* weights.

One registered method, ``cfa``; its ``base_method`` chooses AT mode (``pgd_at``, the default),
TRADES mode (``trades``) or DHAT (``dhat``; needs masks): the catalog's ``cfa``, ``cfa_trades`` and
``dhat_cfa`` are YAML sections.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from dhat.attacks import batchnorm_mode, pgd
from dhat.config import check_non_negative
from dhat.methods import dhat as _dhat  # noqa: F401 - registers the base dhat_cfa wraps before its class is made
from dhat.methods import pgd_at as _pgd_at  # noqa: F401 - the base of cfa
from dhat.methods.base import AttackSettings, Batch, EpochContext, StepOutput, register_method
from dhat.methods.trades import TRADES
from dhat.methods.wrapping import MethodWrapper, WrapperParams

__all__ = [
    "CFAParams",
    "ClassWiseCalibratedTraining",
    "class_robust_accuracy",
    "ema_update",
]

logger = logging.getLogger(__name__)


def _validation_attack_defaults() -> AttackSettings:
    # PGD-10 at 8/255, step 2/255, eval mode: the public code's validation attack.
    return AttackSettings(eps="8/255", step_size="2/255", steps=10, start="uniform", bn_mode="eval")


def class_robust_accuracy(
    model: nn.Module, data: Any, attack: AttackSettings, batch_size: int, num_classes: int
) -> torch.Tensor:
    """Per-class robust accuracy (fraction in ``[0, 1]``) of ``model`` on a ``DeviceImageSet``.

    The attack is CE-PGD with ``attack``'s settings; ``attack.bn_mode`` sets the model mode
    (eval by default), restored afterwards. Classes absent from ``data`` get ``NaN``.
    """
    device = data.labels.device
    correct = torch.zeros(num_classes, device=device)
    count = torch.zeros(num_classes, device=device)
    with batchnorm_mode(model, attack.bn_mode):
        for start in range(0, len(data), batch_size):
            x = data.float_images(slice(start, start + batch_size))
            y = data.labels[start : start + batch_size]
            x_adv = pgd(model, x, y, float(attack.eps), float(attack.step_size), attack.steps, start=attack.start)
            with torch.no_grad():
                hit = (model(x_adv).argmax(dim=1) == y).to(correct.dtype)
            correct.index_add_(0, y, hit)
            count.index_add_(0, y, torch.ones_like(hit))
    return torch.where(count > 0, correct / count.clamp_min(1), torch.full_like(count, float("nan")))


@torch.no_grad()
def ema_update(average: nn.Module, model: nn.Module, decay: float) -> None:
    """``average <- decay * average + (1 - decay) * model`` over the whole state dict.

    Floating-point entries (weights, batch-norm running statistics) are averaged, as the
    public code's weight averaging does over ``state_dict()``; integer buffers (batch-norm's
    ``num_batches_tracked``) are copied from ``model``.
    """
    current = model.state_dict()
    for key, value in average.state_dict().items():
        new = current[key]
        if value.is_floating_point():
            value.mul_(decay).add_(new.to(value.dtype), alpha=1.0 - decay)
        else:
            value.copy_(new)


@dataclass
class CFAParams(WrapperParams):
    """CFA parameters (CIFAR-10 defaults of the public code; docs/design.md, "The baselines").

    Attributes:
        base_method: the wrapped method: ``pgd_at`` (AT mode), ``trades`` (TRADES mode, with CCR) or ``dhat``.
        lambda1: CCM base factor, ``eps_c = (lambda1 + r_c) * eps``.
        lambda2, ccr: TRADES mode only: CCR's base factor and its switch (on by default).
        ccm_start_epoch: 0-based epoch from which the class-wise radii (and weights) apply.
        fawa_decay: decay of the weight average.
        fawa_threshold: minimum worst-class validation robust accuracy (fraction) for an update.
        validation: the attack measuring class-wise validation robustness (PGD-10, eval mode).
        validation_batch_size: batch size of that evaluation.
        base: the wrapped method's own parameters.
    """

    base_method: str = "pgd_at"
    lambda1: float = 0.5
    lambda2: float = 0.5
    ccr: bool = True
    ccm_start_epoch: int = 10
    fawa_decay: float = 0.88
    fawa_threshold: float = 0.2
    validation: AttackSettings = field(default_factory=_validation_attack_defaults)
    validation_batch_size: int = 500

    def validate(self, section: str) -> CFAParams:
        check_non_negative(self, section, "lambda1", "lambda2")
        if not isinstance(self.ccr, bool):
            raise ValueError(f"{section}.ccr must be true or false, got {self.ccr!r}")
        if int(self.ccm_start_epoch) < 0:
            raise ValueError(f"{section}.ccm_start_epoch must be >= 0, got {self.ccm_start_epoch}")
        if not 0.0 <= self.fawa_decay < 1.0:
            raise ValueError(f"{section}.fawa_decay must be in [0, 1), got {self.fawa_decay}")
        if not 0.0 <= self.fawa_threshold <= 1.0:
            raise ValueError(f"{section}.fawa_threshold is a fraction in [0, 1], got {self.fawa_threshold}")
        if int(self.validation_batch_size) < 1:
            raise ValueError(f"{section}.validation_batch_size must be >= 1, got {self.validation_batch_size}")
        self.ccm_start_epoch = int(self.ccm_start_epoch)
        self.validation_batch_size = int(self.validation_batch_size)
        self.validation = self.validation.validate(f"{section}.validation")
        super().validate(section)
        return self


@register_method("cfa")
class ClassWiseCalibratedTraining(MethodWrapper):
    """CFA around the base method named by ``Params.base_method`` (see the module docstring).

    The objective is the base objective with ``batch.attack_eps`` set (and, in TRADES mode,
    the class-wise convex TRADES weight); :meth:`train_step` also records the robust
    predictions for the next epoch's radii; :meth:`evaluation_model` is the FAWA average.
    """

    evaluated_weights_note = "FAWA weight average"

    Params: ClassVar[type] = CFAParams

    def __init__(self, params: CFAParams) -> None:
        super().__init__(params)
        attack = getattr(self.base.params, "attack", None)
        if not isinstance(attack, AttackSettings):
            raise ValueError(f"{self.name}: base method {self.base.name!r} has no 'attack' settings to calibrate")
        self.trades_mode = isinstance(self.base, TRADES)
        self._reset()

    def _reset(self) -> None:
        self._correct: torch.Tensor | None = None
        self._count: torch.Tensor | None = None
        self.class_accuracy: torch.Tensor | None = None  # r_c of the last finished epoch (NaN: class unseen)
        self.average: nn.Module | None = None
        self.fawa_updates = 0

    # ----- CCM / CCR ---------------------------------------------------------------------------

    def calibrated(self, epoch: int) -> bool:
        """Whether the class-wise radii (and CCR weights) apply in 0-based ``epoch``."""
        return epoch >= self.params.ccm_start_epoch and self.class_accuracy is not None

    def class_radii(self) -> torch.Tensor | None:
        """``eps_c = (lambda1 + r_c) * eps`` per class, or ``None`` before the first finished epoch.

        A class absent from the previous epoch keeps the base radius.
        """
        if self.class_accuracy is None:
            return None
        eps = float(self.base.params.attack.eps)
        factor = torch.where(
            torch.isnan(self.class_accuracy),
            torch.ones_like(self.class_accuracy),
            self.params.lambda1 + self.class_accuracy,
        )
        return factor * eps

    def class_trades_beta(self) -> torch.Tensor | None:
        """CCR's class-wise TRADES trade-off ``beta_c = (lambda2 + r_c) * beta`` (TRADES mode only).

        Used in the convex form, it gives the paper's weight
        ``b_c = beta_c / (1 + beta_c) = (lambda2 + r_c) beta / (1 + (lambda2 + r_c) beta)``.
        Classes absent from the previous epoch keep ``beta``.
        """
        if not self.trades_mode or not self.params.ccr or self.class_accuracy is None:
            return None
        beta = float(self.base.params.beta)
        r = self.class_accuracy
        return torch.where(torch.isnan(r), torch.full_like(r, beta), (self.params.lambda2 + r) * beta)

    def calibrate(self, batch: Batch) -> Batch:
        """``batch`` with the per-sample radius ``eps_{y_i}`` once CCM applies, else unchanged."""
        radii = self.class_radii()
        if not self.calibrated(batch.epoch) or radii is None:
            return batch
        return dataclasses.replace(batch, attack_eps=radii.to(batch.x.device)[batch.y])

    def objective(self, model: nn.Module, batch: Batch) -> StepOutput:
        batch = self.calibrate(batch)
        if not isinstance(self.base, TRADES):  # AT / DHAT mode: only the radius changes
            return self.base.objective(model, batch)
        crafted = self.base.craft(model, batch)
        class_beta = self.class_trades_beta()
        sample_beta = None
        if class_beta is not None and self.calibrated(batch.epoch):
            sample_beta = class_beta.to(batch.x.device)[batch.y]
        return self.base.loss_on(model, batch, crafted, sample_beta=sample_beta, normalise=True)

    def record(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Accumulate this epoch's class-wise robust training accuracy from adversarial logits."""
        logits = logits.detach()
        if self._correct is None or self._count is None or self._correct.shape[0] != logits.shape[1]:
            self._correct = torch.zeros(logits.shape[1], device=logits.device)
            self._count = torch.zeros(logits.shape[1], device=logits.device)
        hit = (logits.argmax(dim=1) == y).to(self._correct.dtype)
        self._correct.index_add_(0, y, hit)
        self._count.index_add_(0, y, torch.ones_like(hit))

    def train_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch) -> StepOutput:
        output = super().train_step(model, optimizer, batch)  # TrainingMethod's step on self.objective
        self.record(output.logits, batch.y)
        return output

    # ----- epoch hooks and FAWA ----------------------------------------------------------------

    def on_epoch_start(self, context: EpochContext) -> None:
        if context.epoch == 0:
            self._reset()  # a fresh run: forget the statistics and average of an earlier one
        self._correct = self._count = None
        self.base.on_epoch_start(context)

    def synchronise(self, distributed: Any) -> None:
        """Class-wise counts over every rank's images (and the wrapped method's own state)."""
        self.base.synchronise(distributed)
        if self._correct is not None and self._count is not None:
            self._correct = distributed.all_reduce_sum(self._correct)
            self._count = distributed.all_reduce_sum(self._count)

    def on_epoch_end(self, context: EpochContext) -> None:
        self.base.on_epoch_end(context)
        if self._correct is not None and self._count is not None:
            self.class_accuracy = torch.where(
                self._count > 0, self._correct / self._count.clamp_min(1), torch.full_like(self._count, float("nan"))
            )
        self._update_average(context)

    def worst_class_validation_accuracy(self, model: nn.Module, val_set: Any, num_classes: int) -> float:
        """Minimum over the classes present of the validation robust accuracy (fraction)."""
        accuracy = class_robust_accuracy(
            model, val_set, self.params.validation, self.params.validation_batch_size, num_classes
        )
        present = accuracy[~torch.isnan(accuracy)]
        return float(present.min()) if present.numel() else float("nan")

    def _update_average(self, context: EpochContext) -> None:
        if context.val_set is None or len(context.val_set) == 0:
            logger.warning("%s: no validation split, FAWA never updates", self.name)
            return
        num_classes = self._num_classes(context)
        worst = self.worst_class_validation_accuracy(context.model, context.val_set, num_classes)
        if not worst >= self.params.fawa_threshold:  # NaN never qualifies
            logger.info("%s epoch %d: worst-class val robust acc %.3f < %.3f, FAWA unchanged",
                        self.name, context.epoch + 1, worst, self.params.fawa_threshold)
            return
        if self.average is None:
            self.average = copy.deepcopy(context.model).eval()
        else:
            ema_update(self.average, context.model, self.params.fawa_decay)
        self.fawa_updates += 1
        logger.info("%s epoch %d: worst-class val robust acc %.3f, FAWA update %d",
                    self.name, context.epoch + 1, worst, self.fawa_updates)

    def _num_classes(self, context: EpochContext) -> int:
        if self._correct is not None:
            return int(self._correct.shape[0])
        labels = [int(context.val_set.labels.max()) + 1]
        if context.train_set is not None and len(context.train_set):
            labels.append(int(context.train_set.labels.max()) + 1)
        return max(labels)

    def evaluation_model(self, model: nn.Module) -> nn.Module:
        """The FAWA average (validated and saved by the engine), or ``model`` before its first update."""
        return self.average if self.average is not None else model

    def state_dict(self) -> dict[str, Any]:
        """Class accuracies of the last epoch, the FAWA average and its update count, and the base's state."""
        return {
            **super().state_dict(),
            "class_accuracy": self.class_accuracy,
            "average": None if self.average is None else self.average.state_dict(),
            "fawa_updates": self.fawa_updates,
        }

    def load_state_dict(self, state: Mapping[str, Any], model: nn.Module) -> None:
        super().load_state_dict(state, model)
        accuracy = state.get("class_accuracy")
        self.class_accuracy = None if accuracy is None else accuracy.to(next(model.parameters()).device)
        self.average = None
        if state.get("average") is not None:
            self.average = copy.deepcopy(model).eval()
            self.average.load_state_dict(state["average"])
        self.fawa_updates = int(state.get("fawa_updates", 0))
