"""The training-method interface and its registry.

A method turns a mini-batch into a loss (and the parts it logs). Adding a
method is one module with a class decorated by :func:`register_method` plus
one import line in ``dhat/methods/__init__.py``; its hyper-parameters are a
dataclass ``Params`` that the YAML under the method's namespace fills in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from dhat.attacks import StartKind, pgd
from dhat.attacks import batchnorm_mode as _bn_mode
from dhat.config import dataclass_from_dict, parse_pixel_value

__all__ = [
    "AttackSettings",
    "Batch",
    "StepOutput",
    "TrainingMethod",
    "register_method",
    "create_method",
    "available_methods",
    "method_class",
]


@dataclass
class AttackSettings:
    """An L-inf signed-gradient attack used inside training.

    ``eps`` and ``step_size`` accept numbers or fractions such as ``"8/255"``;
    ``bn_mode`` is the batch-norm mode while crafting (``train`` as in the DHAT
    reference code, ``eval`` as in TRADES/MART), restored afterwards.
    """

    eps: float | str = "8/255"
    step_size: float | str = "2/255"
    steps: int = 10
    start: StartKind = "uniform"
    bn_mode: Literal["train", "eval"] = "train"

    def validate(self, section: str) -> AttackSettings:
        """Return a copy with numeric radii, or raise naming ``section.<field>``."""
        eps = parse_pixel_value(self.eps, f"{section}.eps")
        step = parse_pixel_value(self.step_size, f"{section}.step_size")
        if eps < 0:
            raise ValueError(f"{section}.eps must be >= 0, got {eps}")
        if step < 0:
            raise ValueError(f"{section}.step_size must be >= 0, got {step}")
        if int(self.steps) < 0:
            raise ValueError(f"{section}.steps must be >= 0, got {self.steps}")
        if self.start not in ("uniform", "normal", "none"):
            raise ValueError(f"{section}.start must be 'uniform', 'normal' or 'none', got {self.start!r}")
        if self.bn_mode not in ("train", "eval"):
            raise ValueError(f"{section}.bn_mode must be 'train' or 'eval', got {self.bn_mode!r}")
        return dataclasses.replace(self, eps=eps, step_size=step, steps=int(self.steps))

    def craft(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy PGD with these settings (model mode restored afterwards)."""
        with _bn_mode(model, self.bn_mode):
            return pgd(model, x, y, float(self.eps), float(self.step_size), self.steps, start=self.start)


@dataclass
class Batch:
    """One training mini-batch, already augmented, on the training device.

    Attributes:
        x: images in ``[0, 1]``, ``[B, C, H, W]``.
        y: labels ``[B]``.
        indices: positions of the images in the training set (per-sample state such as
            soft labels is keyed by them).
        masks: attention maps in ``[0, 1]``, ``[B, H, W]``, carried through the same
            crop/flip as ``x``; ``None`` for methods that do not need them.
        epoch: 0-based epoch; ``num_epochs`` the total.
    """

    x: torch.Tensor
    y: torch.Tensor
    indices: torch.Tensor
    masks: torch.Tensor | None = None
    epoch: int = 0
    num_epochs: int = 1


@dataclass
class StepOutput:
    """What a method returns for a batch: the loss, logits for train accuracy, logged parts."""

    loss: torch.Tensor
    logits: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)


class TrainingMethod:
    """Base class: subclasses set ``Params`` and implement :meth:`objective`.

    ``train_step`` does the usual backward and optimiser step; wrappers such as
    adversarial weight perturbation override it.
    """

    name: ClassVar[str] = ""
    needs_masks: ClassVar[bool] = False
    Params: ClassVar[type] = type(None)

    def __init__(self, params: Any) -> None:
        self.params = params

    def objective(self, model: nn.Module, batch: Batch) -> StepOutput:
        """Loss of ``model`` on ``batch`` (model in train mode on entry)."""
        raise NotImplementedError

    def train_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch) -> StepOutput:
        """One optimisation step on ``batch``."""
        output = self.objective(model, batch)
        optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        optimizer.step()
        return output

    def on_epoch_start(self, epoch: int, model: nn.Module) -> None:
        """Hook before each epoch (e.g. schedules of method state)."""

    def on_epoch_end(self, epoch: int, model: nn.Module) -> None:
        """Hook after each epoch's optimisation, before validation."""

    def describe(self) -> dict[str, Any]:
        """JSON-friendly description (stored in checkpoints and metrics)."""
        return {"name": self.name, "params": dataclasses.asdict(self.params)}


_REGISTRY: dict[str, type[TrainingMethod]] = {}


def register_method(name: str) -> Callable[[type[TrainingMethod]], type[TrainingMethod]]:
    """Class decorator adding a method to the registry under ``name``."""

    def decorate(cls: type[TrainingMethod]) -> type[TrainingMethod]:
        if name in _REGISTRY:
            raise ValueError(f"training method {name!r} is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def available_methods() -> list[str]:
    """Names of every registered method."""
    return sorted(_REGISTRY)


def method_class(name: str) -> type[TrainingMethod]:
    """The class registered as ``name``; the error lists what exists."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"method.name={name!r} is not a registered training method; choose one of {', '.join(available_methods())}"
        ) from None


def create_method(name: str, params: Mapping[str, Any] | None = None, section: str | None = None) -> TrainingMethod:
    """Instantiate method ``name`` with hyper-parameters ``params`` (validated).

    Args:
        name: registry name (``pgd_at``, ``dhat``, ...).
        params: overrides of the method's ``Params`` defaults; nested attack settings as mappings.
        section: YAML path used in error messages (defaults to ``name``).
    """
    cls = method_class(name)
    section = section or name
    values = dict(params or {})
    attack_fields = {f.name for f in dataclasses.fields(cls.Params) if f.type in ("AttackSettings", AttackSettings)}
    for key in attack_fields & set(values):
        if isinstance(values[key], Mapping):
            default = next(f for f in dataclasses.fields(cls.Params) if f.name == key).default_factory()  # type: ignore[misc]
            merged = {**dataclasses.asdict(default), **values[key]}
            values[key] = dataclass_from_dict(AttackSettings, merged, f"{section}.{key}")
    instance = dataclass_from_dict(cls.Params, values, section)
    validate = getattr(instance, "validate", None)
    if validate is not None:
        instance = validate(section)
    return cls(instance)
