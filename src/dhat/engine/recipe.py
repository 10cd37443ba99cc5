"""The training recipe: the ``training`` section (and a method's overrides of it), validated by name.

:class:`TrainingConfig` holds the optimiser, schedule, augmentation, checkpoint selection,
resume, precision and data-parallel settings every training run reads (:mod:`dhat.engine.training`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dhat.config import dataclass_from_dict, parse_pixel_value
from dhat.data.loading import LoaderSettings, default_workers
from dhat.engine.augment import AUGMENTATIONS
from dhat.engine.precision import PRECISIONS

__all__ = ["SELECTION_METRICS", "TrainingConfig"]

#: Validation columns a checkpoint can be selected on.
SELECTION_METRICS = ("val_pgd10", "val_clean")


def _range(values: Any, name: str, low: float, high: float) -> tuple[float, float]:
    """``[a, b]`` with ``low < a <= b <= high`` as a float pair, or an error naming ``name``."""
    try:
        a, b = (float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair [low, high], got {values!r}") from None
    if not low < a <= b <= high:
        raise ValueError(f"{name} must be [low, high] with {low:g} < low <= high <= {high:g}, got {values!r}")
    return a, b


@dataclass
class TrainingConfig:
    """Optimisation recipe: SGD with momentum and weight decay, decay /10 at 80% and 90% of the epochs.

    The defaults are the embedded CPU default that ``conf/base`` states (a test keeps
    the two equal); the paper's CIFAR recipe (lr 0.1, 100 epochs, crop padding 4, flips)
    is ``conf/cifar10``. ``lr_milestones`` are fractions of ``epochs``; ``select_on``
    picks the "best" checkpoint on the held-out validation split (never on test data).
    ``checkpoint_every`` (epochs; 0 = never) and ``resume`` govern the resumable
    training state (:mod:`dhat.engine.resume`) when the caller gives it a place.
    ``precision`` (``fp32 | bf16 | fp16``) applies to the training forwards and the
    attacks crafted during training (:mod:`dhat.engine.precision`); ``channels_last`` and
    ``compile`` (``torch.compile``) are GPU speed switches, off by default.
    Validation and evaluation are always fp32. ``devices`` > 1 trains data-parallel in
    that many worker processes (:mod:`dhat.engine.distributed`; one GPU each on CUDA), with
    ``sync_batchnorm`` computing batch-norm statistics over the whole batch instead of
    each worker's share; ``batch_size`` stays the global batch. ``loader_workers`` (``auto``
    or a count; 0 decodes in the training process) and ``loader_prefetch`` feed a training
    split that streams from its files (``data.storage: stream``); they change the speed,
    never the result, and memory-mode runs ignore them. ``augment`` is ``crop_flip``
    (``crop_padding``, ``flip``: the CIFAR recipe) or ``resized_crop`` (a random-resized crop
    with area share in ``resized_crop_scale`` and aspect ratio in ``resized_crop_ratio``, then
    ``flip``: the ImageNet recipe), both on the device (:mod:`dhat.engine.augment`), in either
    storage mode.
    """

    epochs: int = 20
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    lr_milestones: list[float] = field(default_factory=lambda: [0.8, 0.9])
    lr_gamma: float = 0.1
    crop_padding: int = 2
    flip: bool = False
    augment: str = "crop_flip"
    resized_crop_scale: tuple[float, float] = (0.08, 1.0)
    resized_crop_ratio: tuple[float, float] = (0.75, 4 / 3)
    seed: int = 0
    select_on: str = "val_pgd10"
    val_eps: float | str = "8/255"
    val_step_size: float | str = "2/255"
    val_steps: int = 10
    val_batch_size: int = 500
    progress: bool = True
    checkpoint_every: int = 1
    resume: bool = True
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    devices: int = 1
    sync_batchnorm: bool = False
    loader_workers: int | str = "auto"
    loader_prefetch: int = 2

    def validate(self, section: str = "training") -> TrainingConfig:
        """Check every field, naming ``section.<field>`` in errors; radii become floats."""
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 2,
            "lr": self.lr > 0,
            "momentum": 0 <= self.momentum < 1,
            "weight_decay": self.weight_decay >= 0,
            "lr_gamma": 0 < self.lr_gamma <= 1,
            "crop_padding": self.crop_padding >= 0,
            "val_steps": self.val_steps >= 0,
            "val_batch_size": self.val_batch_size >= 1,
            "checkpoint_every": self.checkpoint_every >= 0,
            "devices": isinstance(self.devices, int) and not isinstance(self.devices, bool) and self.devices >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{section}.{name} has an invalid value {getattr(self, name)!r}")
        if any(not 0 < m <= 1 for m in self.lr_milestones):
            raise ValueError(f"{section}.lr_milestones are fractions of the epochs in (0, 1], got {self.lr_milestones}")
        if self.devices > self.batch_size:
            raise ValueError(f"{section}.devices ({self.devices}) exceeds {section}.batch_size ({self.batch_size}): "
                             "every worker needs images of each batch")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"{section}.augment must be one of {', '.join(AUGMENTATIONS)}, got {self.augment!r}")
        self.resized_crop_scale = _range(self.resized_crop_scale, f"{section}.resized_crop_scale", 0.0, 1.0)
        self.resized_crop_ratio = _range(self.resized_crop_ratio, f"{section}.resized_crop_ratio", 0.0, math.inf)
        self.loader_settings()  # LoaderSettings checks loader_workers and loader_prefetch by name
        if self.precision not in PRECISIONS:
            raise ValueError(f"{section}.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.select_on not in SELECTION_METRICS:
            raise ValueError(f"{section}.select_on must be one of {', '.join(SELECTION_METRICS)}, got {self.select_on!r}")
        self.val_eps = parse_pixel_value(self.val_eps, f"{section}.val_eps")
        self.val_step_size = parse_pixel_value(self.val_step_size, f"{section}.val_step_size")
        if self.val_eps < 0:
            raise ValueError(f"{section}.val_eps must be >= 0, got {self.val_eps}")
        return self

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, section: str = "training") -> TrainingConfig:
        """Build and validate from a parameter mapping (unknown keys are errors)."""
        return dataclass_from_dict(cls, values, section).validate(section)

    def loader_settings(self) -> LoaderSettings:
        """The stream-mode loader these settings ask for (``auto`` workers: :func:`~dhat.data.loading.default_workers`)."""
        workers = default_workers() if self.loader_workers == "auto" else self.loader_workers
        return LoaderSettings(workers=workers, prefetch=self.loader_prefetch)

    def milestone_epochs(self) -> list[int]:
        """Epoch indices (0-based) at whose start the learning rate decays."""
        return sorted({max(1, math.floor(m * self.epochs + 0.5)) for m in self.lr_milestones if m < 1})
