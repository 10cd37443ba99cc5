"""Architectures that wrap a classifier, and their registry: what a checkpoint's ``wrapper`` rebuilds.

A method that changes the architecture (FSR adds its separation and recalibration networks)
returns ``{"name": ..., "options": {...}}`` from :meth:`dhat.methods.base.TrainingMethod.model_wrapper`;
the checkpoint stores it and :func:`dhat.checkpoints.build_from_spec` re-applies it through
:func:`wrap_model`. The wrappers live here, beside the models, so a checkpoint rebuilds without
the training methods.

FSR's wrapper (Kim, Cho, Jung, Yoon, CVPR 2023; :mod:`dhat.methods.fsr` has the method and the
full description): over the backbone's last feature map ``F``, a separation net gives a
Gumbel-sigmoid mask ``m`` (train mode random, eval mode deterministic), the robust part
``m * F`` and the non-robust part ``(1 - m) * F``, a recalibration net rewrites the non-robust
positions, and one auxiliary linear head scores the parts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from torch import nn

from dhat.registry import Registry

__all__ = ["MODEL_WRAPPERS", "register_model_wrapper", "wrap_model", "EVAL_MASKS", "FSRClassifier", "fsr_wrapper",
           "check_fsr_options"]

MODEL_WRAPPERS: Registry[Callable[..., nn.Module]] = Registry("model wrapper", "model wrapper name")


def register_model_wrapper(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``fn(model, **options) -> model`` so checkpoints of wrapped models can be rebuilt.

    A method that changes the architecture (e.g. FSR adds modules) returns
    ``{"name": ..., "options": {...}}`` from :meth:`TrainingMethod.model_wrapper`; the
    checkpoint stores it and :func:`dhat.checkpoints.build_from_spec` re-applies it.
    """

    return MODEL_WRAPPERS.register(name)


def wrap_model(model: nn.Module, wrapper: Mapping[str, Any]) -> nn.Module:
    """Apply a registered model wrapper described by ``{"name", "options"}``."""
    return MODEL_WRAPPERS.get(wrapper.get("name"))(model, **dict(wrapper.get("options") or {}))


EvalMask = Literal["tempered", "sigmoid"]
EVAL_MASKS: tuple[str, ...] = ("tempered", "sigmoid")
_NOISE_CLAMP = 1e-6


def _conv_stack(channels: int, hidden: int) -> nn.Sequential:
    """Three 3x3 convs ``C -> hidden -> hidden -> C`` with BN + ReLU between (public FSR layout)."""
    return nn.Sequential(
        nn.Conv2d(channels, hidden, 3, padding=1, bias=False),
        nn.BatchNorm2d(hidden),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, hidden, 3, padding=1, bias=False),
        nn.BatchNorm2d(hidden),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, channels, 3, padding=1, bias=False),
    )


def _infer_sizes(base: nn.Module) -> tuple[int, int]:
    """(feature channels, classes) of a classifier with a ``features``/``head`` interface and a linear ``fc``."""
    for name in ("features", "head"):
        if not callable(getattr(base, name, None)):
            raise ValueError(
                f"the fsr model wrapper needs a classifier exposing {name}(...); got {type(base).__name__}"
            )
    fc = getattr(base, "fc", None)
    if not isinstance(fc, nn.Linear):
        raise ValueError(f"the fsr model wrapper needs a classifier with a linear head 'fc'; got {type(base).__name__}")
    return int(fc.in_features), int(fc.out_features)


class FSRClassifier(nn.Module):
    """A classifier with FSR's separation and recalibration inserted before its head.

    Args:
        base: classifier exposing ``features(x)`` (last feature map), ``head(feature_map)``
            and a linear ``fc`` (e.g. :class:`dhat.models.ImageClassifier`); kept as ``self.base``.
        tau: Gumbel-sigmoid temperature of the mask.
        hidden: channel width of the separation and recalibration nets.
        eval_mask: ``tempered`` (``sigmoid(s / tau)``, public code) or ``sigmoid`` (``sigmoid(s)``).
    """

    def __init__(self, base: nn.Module, tau: float = 0.1, hidden: int = 64, eval_mask: EvalMask = "tempered") -> None:
        super().__init__()
        check_fsr_options(tau, hidden, eval_mask, "fsr wrapper")
        channels, num_classes = _infer_sizes(base)
        self.base = base
        self.tau = float(tau)
        self.eval_mask = eval_mask
        self.separation = _conv_stack(channels, int(hidden))
        self.recalibration = _conv_stack(channels, int(hidden))
        self.aux = nn.Linear(channels, num_classes)

    def mask(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Element-wise robustness mask in ``[0, 1]``: random in train mode, deterministic in eval mode."""
        scores = self.separation(feature_map)
        if self.training:
            u = torch.rand_like(scores).clamp_(_NOISE_CLAMP, 1.0 - _NOISE_CLAMP)
            # Logistic noise = difference of the two Gumbel draws of the public Gumbel-sigmoid.
            return torch.sigmoid((scores + torch.log(u) - torch.log1p(-u)) / self.tau)
        if self.eval_mask == "tempered":
            return torch.sigmoid(scores / self.tau)
        return torch.sigmoid(scores)

    def parts(self, feature_map: torch.Tensor) -> dict[str, torch.Tensor]:
        """FSR's maps for a backbone feature map.

        Returns ``mask``, ``robust`` (``m F``), ``non_robust`` (``(1 - m) F``),
        ``recalibrated`` (``F_nr + R(F_nr)(1 - m)``, the public code's ``rec_feat``) and
        ``output`` (``F_r + F_rec``, what the head classifies).
        """
        m = self.mask(feature_map)
        robust = feature_map * m
        non_robust = feature_map * (1.0 - m)
        recalibrated = non_robust + self.recalibration(non_robust) * (1.0 - m)
        return {
            "mask": m,
            "robust": robust,
            "non_robust": non_robust,
            "recalibrated": recalibrated,
            "output": robust + recalibrated,
        }

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The recalibrated feature map the head classifies (Grad-CAM reads this one)."""
        return self.parts(self.base.features(x))["output"]

    def head(self, feature_map: torch.Tensor) -> torch.Tensor:
        """The wrapped classifier's head (pool + linear)."""
        return self.base.head(feature_map)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Main logits and the auxiliary logits ``{"robust", "non_robust", "recalibrated"}`` of one forward."""
        maps = self.parts(self.base.features(x))
        aux = {name: self.aux(maps[name].mean(dim=(2, 3))) for name in ("robust", "non_robust", "recalibrated")}
        return self.head(maps["output"]), aux


def check_fsr_options(tau: Any, hidden: Any, eval_mask: Any, section: str) -> None:
    """Validate the wrapper options, naming ``section.<field>``."""
    if isinstance(tau, bool) or not isinstance(tau, int | float) or tau <= 0:
        raise ValueError(f"{section}.tau (Gumbel-sigmoid temperature) must be > 0, got {tau!r}")
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        raise ValueError(f"{section}.hidden must be an integer >= 1, got {hidden!r}")
    if eval_mask not in EVAL_MASKS:
        raise ValueError(f"{section}.eval_mask must be one of {', '.join(EVAL_MASKS)}, got {eval_mask!r}")


@register_model_wrapper("fsr")
def fsr_wrapper(
    model: nn.Module, tau: float = 0.1, hidden: int = 64, eval_mask: EvalMask = "tempered"
) -> FSRClassifier:
    """Wrap ``model`` with FSR modules (checkpoints store these options and rebuild the wrapper)."""
    return FSRClassifier(model, tau=tau, hidden=hidden, eval_mask=eval_mask)
