"""Grad-CAM attention maps and their overlap with foreground masks.

Grad-CAM (Selvaraju et al., 2017) on the last convolutional feature map:
channel weights are the spatially averaged gradients of the target logit,
the map is the ReLU of the weighted channel sum, upsampled to the image size
and min-max normalised per image to ``[0, 1]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dhat.attacks import batchnorm_mode
from dhat.maps import dequantize_masks, expand_cam, quantize_masks
from dhat.models import ImageClassifier

__all__ = ["expand_cam", "grad_cam", "grad_cam_raw", "grad_cam_batched", "region_iou", "foreground_iou", "quantize_masks", "dequantize_masks"]


def grad_cam_raw(model: ImageClassifier, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Grad-CAM of ``model`` for class ``target`` at the feature map's own resolution (model in eval mode).

    Returns:
        The ReLU of the gradient-weighted channel sum, float ``[B, h, w]`` (``h x w`` is the
        last feature map's grid: 4x4 for a ResNet-18 on 32x32 images, 7x7 on 224x224),
        before any upsampling or normalisation; :func:`expand_cam` turns it into the map
        :func:`grad_cam` returns.
    """
    with batchnorm_mode(model, "eval"):
        # The gradient is w.r.t. the feature map only: the backbone runs without autograd (no
        # activations kept, whatever the image size), and no parameter gradient is built.
        with torch.no_grad():
            feature_map = model.features(x.detach())
    with batchnorm_mode(model, "eval"), torch.enable_grad():
        feature_map = feature_map.detach().requires_grad_(True)
        logits = model.head(feature_map)
        score = logits.gather(1, target.view(-1, 1)).sum()
        (grads,) = torch.autograd.grad(score, feature_map)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    return F.relu((weights * feature_map.detach()).sum(dim=1))


def grad_cam(model: ImageClassifier, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Grad-CAM of ``model`` for class ``target`` on images ``x`` (model in eval mode).

    Returns:
        Maps of shape ``[B, H, W]`` in ``[0, 1]`` (:func:`expand_cam` of :func:`grad_cam_raw`); an
        image whose map is constant (no positive evidence anywhere) gets all zeros.
    """
    return expand_cam(grad_cam_raw(model, x, target), x.shape[-2:])


def grad_cam_batched(
    model: ImageClassifier, images: torch.Tensor, target: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """:func:`grad_cam` over a large set in batches; ``images`` float in ``[0, 1]``, on the model's device."""
    maps = [
        grad_cam(model, images[i : i + batch_size], target[i : i + batch_size])
        for i in range(0, images.shape[0], batch_size)
    ]
    return torch.cat(maps) if maps else images.new_zeros((0, *images.shape[-2:]))


def region_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image IoU of two boolean ``[N, H, W]`` regions; 1 where both are empty (perfect agreement)."""
    if a.shape != b.shape:
        raise ValueError(f"regions must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.bool().flatten(1), b.bool().flatten(1)
    intersection = (a & b).sum(1).float()
    union = (a | b).sum(1).float()
    return torch.where(union > 0, intersection / union.clamp_min(1.0), torch.ones_like(union))


def foreground_iou(attention: torch.Tensor, true_foreground: torch.Tensor, threshold: float) -> torch.Tensor:
    """Per-image IoU between ``attention >= threshold`` and a boolean foreground mask (see :func:`region_iou`)."""
    return region_iou(attention >= threshold, true_foreground)
