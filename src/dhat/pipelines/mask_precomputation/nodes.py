"""Nodes of ``mask_precomputation``: a naturally trained reference model and its Grad-CAM maps.

DHAT needs an attention map per training image from a frozen, naturally trained
model. The reference code recomputes Grad-CAM every batch (with a numpy round
trip); since the model is frozen, computing each map once is equivalent and
removes that cost. The maps follow their images through crop and flip during
training.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from dhat.attention import foreground_iou, grad_cam_batched, quantize_masks
from dhat.checkpoints import load_classifier
from dhat.config import resolve_device
from dhat.fitting import fit
from dhat.tensors import to_device_set

logger = logging.getLogger(__name__)


def train_mask_model(
    train_set: dict[str, np.ndarray],
    val_set: dict[str, np.ndarray],
    dataset_info: dict[str, Any],
    mask_model: dict[str, Any],
    device: str,
    training_state: str,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train the natural reference model (``mask_model`` parameters) whose Grad-CAM gives the masks.

    Resumable like every training node: ``training_state`` is the state file beside the model.
    """
    best, _last, history = fit(
        train_set,
        val_set,
        None,
        dataset_info,
        method_params={"name": "natural"},
        model_params=mask_model["model"],
        training_params=mask_model["training"],
        device=device,
        label="mask_model",
        state_path=training_state,
    )
    return best, history


def compute_attention_masks(
    mask_model_checkpoint: dict[str, Any],
    train_set: dict[str, np.ndarray],
    mask_model: dict[str, Any],
    device: str,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Grad-CAM (target = true label, last conv block, per-image min-max) of every training image.

    Returns the maps as uint8 (``round(255 * M)``; the foreground threshold is a
    training parameter, ``omega``) and, where the data has true foreground masks,
    the IoU of the thresholded maps with them.
    """
    torch_device = resolve_device(device)
    model = load_classifier(mask_model_checkpoint, torch_device)
    data = to_device_set(train_set, torch_device, name="train_set")
    maps = grad_cam_batched(model, data.float_images(), data.labels, batch_size=int(mask_model.get("batch_size", 256)))
    quality: dict[str, Any] = {"n_images": len(data), "mean_attention": float(maps.mean())}
    if data.masks is not None:
        truth = data.masks >= 128
        for omega in mask_model.get("iou_thresholds", [0.1, 0.3, 0.5]):
            iou = foreground_iou(maps, truth, float(omega))
            quality[f"iou_true_foreground@{omega}"] = float(iou.mean())
        logger.info("Grad-CAM foreground vs true foreground: %s", {k: round(v, 3) for k, v in quality.items() if k.startswith("iou")})
    return {"masks": quantize_masks(maps).cpu().numpy()}, quality
