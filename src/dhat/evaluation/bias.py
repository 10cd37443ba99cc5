"""Background reliance on data with known foregrounds: accuracy per background variant, Grad-CAM overlap."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from dhat.attention.gradcam import foreground_iou, grad_cam_batched
from dhat.evaluation.inference import (
    check_batch_size,
    check_inputs,
    check_model,
    evaluation_context,
    percent,
    predict_raw,
)
from dhat.models import ImageClassifier

__all__ = ["background_bias_metrics"]


def background_bias_metrics(
    model: ImageClassifier,
    variant_sets: Mapping[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]],
    cam_threshold: float,
    batch_size: int = 256,
    random_key: str = "test",
    aligned_key: str = "test_aligned",
) -> dict[str, Any]:
    """How much the model relies on backgrounds, on test variants with known foregrounds.

    Args:
        model: classifier exposing ``features``/``head`` (Grad-CAM needs them).
        variant_sets: ``name -> (images, labels, masks or None)``; masks are bool
            ``[N, H, W]`` true foregrounds.
        cam_threshold: Grad-CAM value in ``[0, 1]`` from which a pixel is foreground.
        random_key, aligned_key: variants whose accuracy difference is the bias gap
            (class-aligned backgrounds minus random backgrounds).

    Returns:
        ``variants``: per name ``{"n_images", "accuracy"}`` plus, where masks exist,
        ``cam_iou`` (mean IoU of ``grad_cam >= cam_threshold`` with the true
        foreground, Grad-CAM target = true label), ``cam_foreground_mass`` (mean share
        of Grad-CAM mass inside the true foreground, over maps with any mass) and
        ``cam_empty_maps`` (maps with no mass, left out of that mean);
        ``aligned_minus_random``: accuracy gap in points, ``None`` without both variants.
    """
    if not isinstance(cam_threshold, int | float) or not 0.0 <= cam_threshold <= 1.0:
        raise ValueError(f"cam_threshold must be a number in [0, 1], got {cam_threshold!r}")
    if not variant_sets:
        raise ValueError("variant_sets must hold at least one variant, e.g. {'test': (images, labels, masks)}")
    check_model(model)
    check_batch_size(batch_size)
    variants: dict[str, dict[str, Any]] = {}
    for name, entry in variant_sets.items():
        if not isinstance(entry, tuple | list) or len(entry) != 3:
            raise ValueError(f"variant_sets[{name!r}] must be a tuple (images, labels, masks or None)")
        images, labels, masks = entry
        device, images, labels = check_inputs(model, images, labels, f"variant_sets[{name!r}] ")
        stats: dict[str, Any] = {"n_images": int(images.shape[0])}
        with evaluation_context(model):
            logits = predict_raw(model, images, batch_size)
        stats["accuracy"] = percent(logits.argmax(1) == labels) if labels.numel() else 0.0
        if masks is not None:
            expected = (images.shape[0], *images.shape[-2:])
            if not isinstance(masks, torch.Tensor) or tuple(masks.shape) != expected:
                got = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
                raise ValueError(f"variant_sets[{name!r}] masks must be bool [N, H, W] = {expected}, got {got}")
            truth = masks.to(device).bool()
            with evaluation_context(model):
                cams = grad_cam_batched(model, images, labels, batch_size)
            stats["cam_iou"] = foreground_iou(cams, truth, cam_threshold).mean().item() if cams.numel() else None
            mass = cams.flatten(1).sum(1)
            inside = (cams * truth).flatten(1).sum(1)
            has_mass = mass > 0
            stats["cam_foreground_mass"] = (
                (inside[has_mass] / mass[has_mass]).mean().item() if has_mass.any() else None
            )
            stats["cam_empty_maps"] = int((~has_mass).sum().item())
        variants[name] = stats
    gap = None
    if random_key in variants and aligned_key in variants:
        gap = variants[aligned_key]["accuracy"] - variants[random_key]["accuracy"]
    return {"variants": variants, "aligned_minus_random": gap}
