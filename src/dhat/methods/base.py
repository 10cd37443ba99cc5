"""The training-method interface and its registry.

A method turns a mini-batch into a loss (and the parts it logs). Adding a
method is one module with a class decorated by :func:`register_method` plus
one import line in ``dhat/methods/__init__.py``; its hyper-parameters are a
dataclass ``Params`` that the YAML under the method's namespace fills in.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from dhat.attacks import StartKind, pgd
from dhat.attacks import batchnorm_mode as _bn_mode
from dhat.attention.masks import MaskRule
from dhat.config import dataclass_from_dict, parse_pixel_value
from dhat.data.capabilities import EXTERNAL_MASKS, TRUE_MASKS
from dhat.model_wrappers import register_model_wrapper, wrap_model  # re-exported: methods register wrappers
from dhat.registry import Registry

__all__ = [
    "MASK_SOURCES",
    "MASK_SOURCE_NEEDS",
    "MaskSettings",
    "AttackSettings",
    "EvalModeAttackParams",
    "Batch",
    "StepOutput",
    "EpochContext",
    "TrainingMethod",
    "attack_defaults",
    "register_method",
    "register_model_wrapper",
    "wrap_model",
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

    def radius_and_step(
        self, eps: torch.Tensor | None = None
    ) -> tuple[float | torch.Tensor, float | torch.Tensor]:
        """The attack's radius and step, or per-sample ones when ``eps`` overrides the radius.

        The step keeps its ratio to the radius, so class-wise radii (CFA) get proportional steps.
        """
        if eps is None:
            return float(self.eps), float(self.step_size)
        return eps, eps * (float(self.step_size) / max(float(self.eps), 1e-12))

    def craft(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Cross-entropy PGD with these settings (model mode restored afterwards).

        ``eps`` optionally replaces the radius with one per sample (class-wise radii,
        CFA); the step size then scales with it.
        """
        radius, step = self.radius_and_step(eps)
        with _bn_mode(model, self.bn_mode):
            return pgd(model, x, y, radius, step, self.steps, start=self.start)


#: Where a mask-needing method's maps come from, and the data capability each one needs (``None``: any data).
MASK_SOURCE_NEEDS: dict[str, str | None] = {"gradcam": None, "true": TRUE_MASKS, "external": EXTERNAL_MASKS}
MASK_SOURCES = tuple(MASK_SOURCE_NEEDS)


@dataclass(frozen=True)
class MaskSettings:
    """A mask-needing method's choice of attention maps.

    ``source``: ``gradcam`` (the precomputed Grad-CAM maps of the natural reference model),
    ``true`` (the data's true foreground masks: the oracle, where the data has them) or
    ``external`` (masks computed elsewhere, ``data.external_masks``);
    ``rule``: how the maps are split into foreground and background.
    """

    source: str
    rule: MaskRule

    @property
    def needs(self) -> str | None:
        """The data capability these maps need (:mod:`dhat.data.capabilities`), or ``None``."""
        return MASK_SOURCE_NEEDS[self.source]


@dataclass
class EvalModeAttackParams:
    """Params base of methods whose public code crafts CE-PGD-10 (8/255, step 2/255, uniform
    start) with batch norm in eval mode (FSR, SGLR)."""

    attack: AttackSettings = field(default_factory=functools.partial(AttackSettings, bn_mode="eval"))


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
        attack_eps: optional per-sample radius ``[B]`` of the adversarial attack, set by
            wrappers such as CFA; objectives pass it to :meth:`AttackSettings.craft`.
    """

    x: torch.Tensor
    y: torch.Tensor
    indices: torch.Tensor
    masks: torch.Tensor | None = None
    epoch: int = 0
    num_epochs: int = 1
    attack_eps: torch.Tensor | None = None


@dataclass
class EpochContext:
    """What epoch hooks see: the epoch (0-based), the model being trained, and the data.

    ``train_set`` / ``val_set`` are :class:`dhat.tensors.DeviceImageSet` (un-augmented);
    ``history`` holds the rows of the finished epochs.
    """

    epoch: int
    num_epochs: int
    model: nn.Module
    train_set: Any
    val_set: Any
    history: list[dict[str, float]] = field(default_factory=list)


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
    # What the saved and evaluated weights are, when not simply the trained model (reports show it).
    evaluated_weights_note: ClassVar[str] = ""
    Params: ClassVar[type] = type(None)

    def __init__(self, params: Any) -> None:
        self.params = params

    def objective(self, model: nn.Module, batch: Batch) -> StepOutput:
        """Loss of ``model`` on ``batch`` (model in train mode on entry).

        By default the loss at the inputs :meth:`craft` makes; a method overrides either
        this, or :meth:`craft` and :meth:`loss_on`.
        """
        return self.loss_on(model, batch, self.craft(model, batch))

    def craft(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """Optional: the inputs the loss is computed on (adversarial, inverse examples), crafted once.

        Methods that implement this and :meth:`loss_on` satisfy
        ``objective(model, batch) == loss_on(model, batch, craft(model, batch))``. Wrappers that
        need the loss at several weight settings for the *same* examples (adversarial weight
        perturbation: the proxy step and the perturbed step share ``x'``) require the split.
        """
        raise NotImplementedError(f"method {self.name!r} does not separate crafting its inputs from its loss")

    def loss_on(self, model: nn.Module, batch: Batch, crafted: dict[str, torch.Tensor]) -> StepOutput:
        """Optional: the loss of ``model`` on ``batch`` at fixed inputs ``crafted`` from :meth:`craft`."""
        raise NotImplementedError(f"method {self.name!r} does not separate crafting its inputs from its loss")

    def train_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch) -> StepOutput:
        """One optimisation step on ``batch``."""
        output = self.objective(model, batch)
        self.optimise(optimizer, output.loss)
        return output

    #: fp16 training's gradient scaler, set by the training engine (``None``: plain backward and step).
    loss_scaler: torch.amp.GradScaler | None = None

    def use_loss_scaler(self, scaler: torch.amp.GradScaler | None) -> None:
        """Step through ``scaler`` (fp16 training); wrappers pass it on to the method they wrap."""
        self.loss_scaler = scaler

    def optimise(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        """Zero the gradients, backpropagate ``loss`` and step (through :attr:`loss_scaler` when set)."""
        optimizer.zero_grad(set_to_none=True)
        if self.loss_scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.loss_scaler.scale(loss).backward()
        self.loss_scaler.step(optimizer)
        self.loss_scaler.update()

    def mask_settings(self) -> MaskSettings | None:
        """Where a mask-needing method's attention maps come from and how they are thresholded.

        ``None`` for methods that use no masks.
        """
        return None

    def model_wrapper(self) -> dict[str, Any] | None:
        """``{"name", "options"}`` of a registered model wrapper this method trains with, or ``None``.

        The training node applies it before training and records it in the checkpoint.
        """
        return None

    def on_epoch_start(self, context: EpochContext) -> None:
        """Hook before each epoch (e.g. schedules of method state)."""

    def on_epoch_end(self, context: EpochContext) -> None:
        """Hook after each epoch's optimisation, before validation (e.g. per-class statistics, averaging)."""

    def evaluation_model(self, model: nn.Module) -> nn.Module:
        """The model that is validated and saved: ``model`` itself, or e.g. a weight average of it."""
        return model

    def state_dict(self) -> dict[str, Any]:
        """The method's own state at an epoch end (tensors, numbers, ``None``), saved with a resumable run.

        Stateless methods have none; CFA and SGLR override this and :meth:`load_state_dict`.
        """
        return {}

    def load_state_dict(self, state: Mapping[str, Any], model: nn.Module) -> None:
        """Restore :meth:`state_dict` before the first resumed epoch (``model`` already holds its weights)."""

    #: Whether the method can train data-parallel (``training.devices`` > 1).
    supports_data_parallel: bool = True

    def synchronise(self, distributed: Any) -> None:
        """Data-parallel training: combine the state each rank kept for its own images during the epoch.

        Called on every rank after the epoch's steps, before :meth:`on_epoch_end`;
        ``distributed`` is a :class:`dhat.engine.distributed.Distributed`. Stateless methods have
        nothing to combine; SGLR (soft labels by index) and CFA (class accuracies) do.
        """

    def describe(self) -> dict[str, Any]:
        """JSON-friendly description (stored in checkpoints and metrics)."""
        return {"name": self.name, "params": dataclasses.asdict(self.params)}


METHODS: Registry[type[TrainingMethod]] = Registry("training method", "method.name")
def attack_defaults(**settings: Any) -> Callable[[], AttackSettings]:
    """Default factory of an attack field: :class:`AttackSettings` with ``settings`` over its defaults.

    Example: ``attack: AttackSettings = field(default_factory=attack_defaults(start="normal", bn_mode="eval"))``.
    """
    return functools.partial(AttackSettings, **settings)


def register_method(name: str) -> Callable[[type[TrainingMethod]], type[TrainingMethod]]:
    """Class decorator adding a method to the registry under ``name``."""

    def decorate(cls: type[TrainingMethod]) -> type[TrainingMethod]:
        METHODS.register(name)(cls)
        cls.name = name
        return cls

    return decorate


def available_methods() -> list[str]:
    """Names of every registered method."""
    return sorted(METHODS.names())


def method_class(name: str) -> type[TrainingMethod]:
    """The class registered as ``name``; the error lists what exists."""
    return METHODS.get(name)


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
