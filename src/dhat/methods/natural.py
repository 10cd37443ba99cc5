"""Natural (standard) training: cross-entropy on clean images."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from dhat.methods.base import Batch, StepOutput, TrainingMethod, register_method


@register_method("natural")
class NaturalTraining(TrainingMethod):
    """``CE(f(x), y)``; also trains the reference model whose Grad-CAM gives DHAT's masks."""

    @dataclass
    class Params:
        label_smoothing: float = 0.0

        def validate(self, section: str) -> NaturalTraining.Params:
            if not 0.0 <= self.label_smoothing < 1.0:
                raise ValueError(f"{section}.label_smoothing must be in [0, 1), got {self.label_smoothing}")
            return self

    def objective(self, model: nn.Module, batch: Batch) -> StepOutput:
        logits = model(batch.x)
        loss = F.cross_entropy(logits, batch.y, label_smoothing=self.params.label_smoothing)
        return StepOutput(loss=loss, logits=logits, parts={"ce": loss.detach()})
