"""Where a model looks as its input is pushed towards or away from the true class (paper figures 1b and 7).

For each signed radius ``r``: ``r < 0`` gives *inverse* adversarial examples (PGD that
*lowers* the cross-entropy of the true class within the ``|r|`` ball, the examples UIAT
trains on), ``r > 0`` adversarial examples (PGD that raises it), ``r = 0`` the clean images.
On each set the model's own Grad-CAM (target = true label) gives an attention *region*:
the ``attention_share`` most attended pixels of each image. Its IoU is measured with the
attended region of the clean image and with that region's complement (the clean
background), and, where the data has true foreground masks, with the true digit and the
true background. The paper's diagnosis is that UIAT's attention drifts from the object
to the background as the inverse radius grows; DHAT is meant to keep it on the object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from dhat.attacks import cross_entropy_loss, signed_gradient_attack
from dhat.attention.gradcam import grad_cam, region_iou
from dhat.attention.masks import MaskRule, background_mask
from dhat.config import dataclass_from_dict, positive_radii
from dhat.evaluation.inference import check_inputs, evaluation_context, iterate_batches
from dhat.intervals import mean_interval

__all__ = ["AttentionShiftConfig", "attention_region", "region_iou", "shifted_examples", "attention_shift"]

#: Region pairs measured at every radius (the true ones only where the data has masks).
REFERENCES = ("clean_attention", "clean_background", "true_foreground", "true_background")


@dataclasses.dataclass(frozen=True)
class AttentionShiftConfig:
    """Settings of the attention-shift analysis (``analysis.attention_shift`` in ``conf/``).

    Attributes:
        radii: positive L-inf radii (pixel scale); each is used with both signs.
        steps: PGD iterations per example; the step is ``2.5 * radius / steps``.
        attention_share: share of each image's pixels forming its attention region.
        n_images: test images analysed (a fixed class-stratified subset; ``None`` = all).
        subset_seed: seed of that subset.
        batch_size: images per pass.
        seed: base seed of the random starts (batch ``i`` uses ``seed + i``).
    """

    radii: tuple[float, ...] = (4 / 255, 8 / 255, 12 / 255)
    steps: int = 10
    attention_share: float = 0.4
    n_images: int | None = 200
    subset_seed: int = 0
    batch_size: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        section = "analysis.attention_shift"
        object.__setattr__(self, "radii", positive_radii(self.radii, f"{section}.radii"))
        if self.steps < 1:
            raise ValueError(f"{section}.steps must be >= 1, got {self.steps}")
        if not 0.0 < float(self.attention_share) < 1.0:
            raise ValueError(f"{section}.attention_share must be in (0, 1), got {self.attention_share}")
        if self.n_images is not None and self.n_images < 1:
            raise ValueError(f"{section}.n_images must be >= 1 or null (all test images), got {self.n_images}")
        if self.batch_size < 1:
            raise ValueError(f"{section}.batch_size must be >= 1, got {self.batch_size}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> AttentionShiftConfig:
        return dataclass_from_dict(cls, values, "analysis.attention_shift")

    def signed_radii(self) -> tuple[float, ...]:
        """``-r_k, ..., 0, ..., +r_k`` in increasing order."""
        return (*(-r for r in reversed(self.radii)), 0.0, *self.radii)


def attention_region(maps: torch.Tensor, share: float) -> torch.Tensor:
    """Boolean ``[N, H, W]``: the ``round(share * H * W)`` most attended pixels of each map (ties by position)."""
    return ~background_mask(maps, MaskRule(rule="quantile", background_share=1.0 - share))


def shifted_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, radius: float, steps: int) -> torch.Tensor:
    """``x`` pushed within the ``|radius|`` L-inf ball (and ``[0, 1]``): towards the true class when
    ``radius < 0`` (inverse adversarial), away from it when ``radius > 0`` (PGD); ``x`` when 0.

    Uniform random start; the caller seeds and sets the model's mode.
    """
    if radius == 0:
        return x.detach().clone()
    size = abs(radius)
    shifted, _ = signed_gradient_attack(model, x, cross_entropy_loss(y), size, 2.5 * size / steps, steps,
                                        start="uniform", ascend=radius > 0)
    return shifted


def attention_shift(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: AttentionShiftConfig,
    true_foreground: torch.Tensor | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """IoU of the attention region at every signed radius with the clean and true regions, and accuracy.

    Args:
        model: classifier on pixel-scale inputs (put in eval mode here; its mode is restored).
        images, labels: float ``[N, C, H, W]`` in ``[0, 1]`` and int64 ``[N]`` on the model's device.
        config: radii, steps, region size.
        true_foreground: optional bool ``[N, H, W]`` (the true object).
        progress: show a progress bar per radius.

    Returns:
        One row per (signed radius, quantity): ``radius`` (pixel scale), ``radius_255``,
        ``quantity`` (``iou_<reference>`` or ``accuracy``), ``estimate``, ``low``, ``high``
        (95% bootstrap over images; IoU in [0, 1], accuracy in percent) and ``n_images``.
    """
    _, images, labels = check_inputs(model, images, labels)
    if true_foreground is not None and tuple(true_foreground.shape) != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"true_foreground must be [N, H, W] matching the images, got {tuple(true_foreground.shape)}")
    per_radius: dict[float, dict[str, list[torch.Tensor]]] = {}
    with evaluation_context(model):  # eval mode, fp32, the caller's random state restored
        for radius in config.signed_radii():
            parts: dict[str, list[torch.Tensor]] = {"maps": [], "correct": []}
            desc = f"attention at {radius * 255:+.0f}/255"
            for index, start, end in iterate_batches(images.shape[0], config.batch_size, desc, progress):
                torch.manual_seed(config.seed + index)
                x = shifted_examples(model, images[start:end], labels[start:end], radius, config.steps)
                with torch.no_grad():
                    parts["correct"].append((model(x).argmax(1) == labels[start:end]).cpu())
                parts["maps"].append(grad_cam(model, x, labels[start:end]).cpu())
            per_radius[radius] = parts
    regions = {r: attention_region(torch.cat(p["maps"]), config.attention_share) for r, p in per_radius.items()}
    clean = regions[0.0]
    references = {"clean_attention": clean, "clean_background": ~clean}
    if true_foreground is not None:
        truth = true_foreground.bool().cpu()
        references |= {"true_foreground": truth, "true_background": ~truth}
    rows: list[dict[str, Any]] = []
    for radius, region in regions.items():
        values = {f"iou_{name}": region_iou(region, ref).numpy() for name, ref in references.items()}
        values["accuracy"] = torch.cat(per_radius[radius]["correct"]).numpy().astype(np.float64) * 100.0
        for quantity, per_image in values.items():
            interval = mean_interval(per_image, seed=config.subset_seed)
            rows.append({"radius": radius, "radius_255": round(radius * 255, 4), "quantity": quantity,
                         "estimate": interval.estimate, "low": interval.low, "high": interval.high,
                         "n_images": interval.n_images})
    return pd.DataFrame(rows)


def iou_quantities(frame: pd.DataFrame) -> Sequence[str]:
    """The IoU quantities present in an :func:`attention_shift` table, in :data:`REFERENCES` order."""
    present = set(frame["quantity"])
    return [f"iou_{name}" for name in REFERENCES if f"iou_{name}" in present]
