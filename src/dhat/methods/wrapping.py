"""Methods built around a registered base method: the wrapped method's parameters and the delegation to it.

AWP (:mod:`dhat.methods.awp`) and CFA (:mod:`dhat.methods.cfa`) wrap PGD-AT, TRADES or DHAT
this way: composition, not a copy of the base method's code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from dhat.methods.base import Batch, EpochContext, MaskSettings, StepOutput, TrainingMethod, create_method

__all__ = ["WrapperParams", "MethodWrapper"]


@dataclass
class WrapperParams:
    """Parameters shared by wrappers: ``base_method`` names the wrapped method, ``base`` holds its parameters.

    A wrapper around another method is a YAML section (``name: awp``, ``params: {base_method:
    trades, ...}``), not a second registration. After :meth:`validate`, ``base`` is the
    *complete* validated parameter set of the base method (defaults filled in), so checkpoints
    and metrics record exactly what ran.
    """

    base_method: str = ""
    base: dict[str, Any] = field(default_factory=dict)

    def validate(self, section: str) -> WrapperParams:
        if not self.base_method or not isinstance(self.base_method, str):
            raise ValueError(f"{section}.base_method must name the wrapped method (pgd_at, trades, dhat, ...), "
                             f"got {self.base_method!r}")
        if self.base is None:
            self.base = {}
        if not isinstance(self.base, Mapping):
            raise ValueError(f"{section}.base must be a mapping of {self.base_method} parameters, got {self.base!r}")
        # The base's own validation names errors as <section>.base.<field>.
        base = create_method(self.base_method, dict(self.base), section=f"{section}.base")
        self.base = dataclasses.asdict(base.params)
        return self


class MethodWrapper(TrainingMethod):
    """A method built around a registered base method (composition, not a copy of its code).

    Subclasses set ``Params`` to a :class:`WrapperParams` subclass; its ``base_method`` names
    the wrapped method, and ``needs_masks`` follows that method. The epoch hooks and
    :meth:`evaluation_model` delegate to the base unless a subclass overrides them.
    """

    Params: ClassVar[type] = WrapperParams

    def __init__(self, params: WrapperParams) -> None:
        super().__init__(params)
        # ``params.base`` was validated (and completed) by WrapperParams.validate; rebuilding
        # from it cannot fail, the section only matters for hand-made params.
        self.base: TrainingMethod = create_method(
            params.base_method, params.base, section=f"{self.name or 'wrapper'}.base"
        )
        self.needs_masks = self.base.needs_masks

    def objective(self, model: nn.Module, batch: Batch) -> StepOutput:
        return self.base.objective(model, batch)

    def craft(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        return self.base.craft(model, batch)

    def loss_on(self, model: nn.Module, batch: Batch, crafted: dict[str, torch.Tensor]) -> StepOutput:
        return self.base.loss_on(model, batch, crafted)

    def model_wrapper(self) -> dict[str, Any] | None:
        return self.base.model_wrapper()

    def mask_settings(self) -> MaskSettings | None:
        return self.base.mask_settings()

    def synchronise(self, distributed: Any) -> None:
        self.base.synchronise(distributed)

    def on_epoch_start(self, context: EpochContext) -> None:
        self.base.on_epoch_start(context)

    def on_epoch_end(self, context: EpochContext) -> None:
        self.base.on_epoch_end(context)

    def evaluation_model(self, model: nn.Module) -> nn.Module:
        return self.base.evaluation_model(model)

    def use_loss_scaler(self, scaler: torch.amp.GradScaler | None) -> None:
        super().use_loss_scaler(scaler)
        self.base.use_loss_scaler(scaler)

    def state_dict(self) -> dict[str, Any]:
        return {"base": self.base.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any], model: nn.Module) -> None:
        self.base.load_state_dict(state.get("base", {}), model)

    def describe(self) -> dict[str, Any]:
        """Name, own parameters and the base method's name and complete parameters."""
        description = super().describe()
        description["base_method"] = self.base.name
        return description
