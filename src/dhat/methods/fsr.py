"""FSR: Feature Separation and Recalibration (Kim, Cho, Jung, Yoon; CVPR 2023).

Follows the authors' public code (github wkim97/FSR: ``models/resnet_fsr.py``,
``models/gumbel_sigmoid.py``, ``train.py``), summarised in docs/design.md, "The baselines", but as a
*wrapper* over any backbone's last feature map ``F`` (``[B, C, h, w]``) instead of a
re-written ResNet:

* **Separation net** ``S``: conv3x3(C->h)-BN-ReLU, conv3x3(h->h)-BN-ReLU, conv3x3(h->C)
  (no biases, h = ``hidden``, 64 in the public code) gives per-element scores ``s``. The
  public code turns ``sigmoid(s)`` into a Gumbel-sigmoid sample: a two-way softmax of
  ``(log sigmoid(s) + g1) / tau`` and ``(log(1 - sigmoid(s)) + g2) / tau`` with Gumbel
  noise ``g1, g2``. Because ``log sigmoid(s) - log(1 - sigmoid(s)) = s`` and the
  difference of two independent Gumbel(0, 1) variables is Logistic(0, 1), that is
  exactly ``m = sigmoid((s + L) / tau)`` with ``L = log u - log(1 - u)``, ``u ~ U(0, 1)``,
  which is how it is computed here (no ``1e-8`` offsets inside logarithms; ``u`` is
  clamped to ``[1e-6, 1 - 1e-6]`` so the noise is finite).
  Train mode draws ``L``; eval mode is deterministic. The public code's eval path feeds
  ``u = 0.5`` to both Gumbel draws, so the noise cancels and ``m = sigmoid(s / tau)``:
  the noise-free mask *at the same temperature* (``eval_mask: tempered``, default).
  ``eval_mask: sigmoid`` gives the plain ``sigmoid(s)`` instead (softer than the ~binary
  masks seen in training).
* Robust part ``F_r = m * F``, non-robust part ``F_nr = (1 - m) * F``.
* **Recalibration net** ``R`` (same layout as ``S``): the public code forms
  ``F_rec = F_nr + R(F_nr) * (1 - m)`` and feeds ``F_r + F_rec`` to the classifier head,
  i.e. ``F + R(F_nr) * (1 - m)``: only the non-robust positions are rewritten. That map is
  what :meth:`FSRClassifier.features` returns, so Grad-CAM and ``head`` see it.
* **Auxiliary head**: one linear layer (shared by the three parts, as in the public code)
  on the globally average-pooled ``F_r``, ``F_nr`` and ``F_rec``.

Training loss (public ``train.py``), all on the adversarial example ``x'``::

    CE(f(x'), y) + lambda_sep [CE(aux(F_r), y) + CE(aux(F_nr), y')] + lambda_rec CE(aux(F_rec), y)

with ``y'`` the top wrong class of the main logits on ``x'``. Inner attack: CE-PGD-10,
eps 8/255, step 2/255 (0.25 eps), uniform start, model in eval mode, hence with the
deterministic mask (the public attack calls the network with ``is_eval=True``).

Here the mask mode follows ``model.training``: an attack crafted with ``bn_mode: train``
also sees random masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dhat.config import check_non_negative
from dhat.losses import top_wrong_class
from dhat.methods.base import Batch, EvalModeAttackParams, StepOutput, TrainingMethod, register_method
from dhat.model_wrappers import EVAL_MASKS, FSRClassifier, check_fsr_options, fsr_wrapper

__all__ = ["FSR", "FSRParams", "FSRClassifier", "fsr_wrapper", "EVAL_MASKS"]  # the architecture: dhat.model_wrappers

@dataclass
class FSRParams(EvalModeAttackParams):
    """FSR hyper-parameters.

    ``lambda_sep`` and ``lambda_rec`` weight the separation and recalibration losses;
    ``tau`` (Gumbel-sigmoid temperature), ``hidden`` (channels of the separation net) and
    ``eval_mask`` (the mask at evaluation) configure the model wrapper. The inner attack
    follows the public FSR train.py (CE-PGD-10, batch norm in eval mode).
    """

    lambda_sep: float = 1.0
    lambda_rec: float = 1.0
    tau: float = 0.1
    hidden: int = 64
    eval_mask: str = "tempered"

    def validate(self, section: str) -> FSRParams:
        self.attack = self.attack.validate(f"{section}.attack")
        check_non_negative(self, section, "lambda_sep", "lambda_rec")
        check_fsr_options(self.tau, self.hidden, self.eval_mask, section)
        return self


@register_method("fsr")
class FSR(TrainingMethod):
    """FSR training of a wrapped model.

    Loss ``CE(f(x'), y) + lambda_sep [CE(aux_r, y) + CE(aux_nr, y')] + lambda_rec CE(aux_rec, y)``.
    """

    Params = FSRParams

    def model_wrapper(self) -> dict[str, Any]:
        p = self.params
        return {"name": "fsr", "options": {"tau": float(p.tau), "hidden": int(p.hidden), "eval_mask": p.eval_mask}}

    def _check_wrapped(self, model: nn.Module) -> None:
        if not callable(getattr(model, "forward_with_aux", None)):
            raise ValueError(
                f"method {self.name!r} trains a model wrapped by the 'fsr' model wrapper (it needs forward_with_aux); "
                f"got {type(model).__name__}: build it with dhat.methods.base.wrap_model(model, method.model_wrapper())"
            )

    def craft(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """``{"x_adv"}``: CE-PGD examples on the wrapped model (deterministic mask in eval mode)."""
        self._check_wrapped(model)
        return {"x_adv": self.params.attack.craft(model, batch.x, batch.y, eps=batch.attack_eps)}

    def loss_on(self, model: nn.Module, batch: Batch, crafted: dict[str, torch.Tensor]) -> StepOutput:
        """The FSR loss at the fixed examples ``crafted["x_adv"]``."""
        self._check_wrapped(model)
        p = self.params
        logits, aux = model.forward_with_aux(crafted["x_adv"])
        wrong = top_wrong_class(logits, batch.y)
        ce = F.cross_entropy(logits, batch.y)
        sep_robust = F.cross_entropy(aux["robust"], batch.y)
        sep_non_robust = F.cross_entropy(aux["non_robust"], wrong)
        rec = F.cross_entropy(aux["recalibrated"], batch.y)
        loss = ce + p.lambda_sep * (sep_robust + sep_non_robust) + p.lambda_rec * rec
        parts = {
            "ce_adv": ce.detach(),
            "sep_robust": sep_robust.detach(),
            "sep_non_robust": sep_non_robust.detach(),
            "rec": rec.detach(),
        }
        return StepOutput(loss=loss, logits=logits, parts=parts)
