"""Nodes of ``mask_precomputation``: a naturally trained reference model and its Grad-CAM maps.

DHAT needs an attention map per training image from a frozen, naturally trained
model. The reference code recomputes Grad-CAM every batch (with a numpy round
trip); since the model is frozen, computing each map once is equivalent and
removes that cost. The maps follow their images through crop and flip during
training.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from dhat.attention.attributions import iterate_attention_maps
from dhat.attention.gradcam import expand_cam, foreground_iou, grad_cam_raw, quantize_masks
from dhat.attention.reference_model import MaskModelSettings, load_mask_model, map_model
from dhat.config import resolve_device
from dhat.engine.fitting import fit
from dhat.tensors import iterate_set

logger = logging.getLogger(__name__)


def _progress(mask_model: dict[str, Any]) -> bool:
    return bool((mask_model.get("training") or {}).get("progress", True))


def _loaded_history(checkpoint: dict[str, Any], val_set: dict[str, np.ndarray], settings: MaskModelSettings,
                    device: str) -> pd.DataFrame:
    """One row for a loaded mask model: its clean accuracy on the validation split (eval mode, fp32)."""
    torch_device = resolve_device(device)
    model = map_model(checkpoint, settings, val_set["images"].shape[1:], torch_device)
    correct = 0
    with torch.no_grad():
        for _, _, x, y in iterate_set(val_set, torch_device, settings.batch_size, name="val_set"):
            correct += int((model(x).argmax(1) == y).sum())
    accuracy = 100.0 * correct / max(1, len(val_set["labels"]))
    logger.info("Loaded mask model: %.1f%% clean accuracy on the %d validation images", accuracy, len(val_set["labels"]))
    origin = checkpoint["metadata"]["origin"]
    return pd.DataFrame([{"method": "mask_model", "epoch": 0, "val_clean": accuracy,
                          "loaded_from": origin.get("pretrained") or origin.get("checkpoint")}])


def train_mask_model(
    train_set: dict[str, np.ndarray],
    val_set: dict[str, np.ndarray],
    dataset_info: dict[str, Any],
    mask_model: dict[str, Any],
    device: str,
    training_state: str,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """The natural reference model whose Grad-CAM gives the masks: trained (``mask_model`` parameters), or
    loaded when ``mask_model.checkpoint`` or ``mask_model.pretrained`` is set (:mod:`dhat.attention.reference_model`).

    Training is resumable like every training node: ``training_state`` is the state file beside the model.
    A loaded model's history is one row, its validation accuracy.
    """
    settings = MaskModelSettings.from_dict(mask_model)
    if settings.loads:
        checkpoint = load_mask_model(settings, dataset_info)
        return checkpoint, _loaded_history(checkpoint, val_set, settings, device)
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


def _gradcam_batches(model: torch.nn.Module, train_set: dict[str, np.ndarray], device: torch.device,
                     settings: MaskModelSettings, progress: bool) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor | None]]:
    """``(start, end, image-resolution maps, feature-resolution maps or None)`` per batch of the training images."""
    if settings.map_resolution == "image":
        for start, end, maps in iterate_attention_maps("gradcam", model, train_set, device, settings.batch_size,
                                                       progress=progress):
            yield start, end, maps, None
        return
    batches = iterate_set(train_set, device, settings.batch_size, name="train_set")
    with tqdm(total=len(train_set["labels"]), desc="gradcam maps", unit="img", leave=False, disable=not progress) as bar:
        for start, end, x, y in batches:
            raw = grad_cam_raw(model, x, y).detach()
            yield start, end, expand_cam(raw, x.shape[-2:]), raw
            bar.update(end - start)


def compute_attention_masks(
    mask_model_checkpoint: dict[str, Any],
    train_set: dict[str, np.ndarray],
    mask_model: dict[str, Any],
    device: str,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Grad-CAM (target = true label, last conv block, per-image min-max) of every training image.

    Returns the maps, their share of pixels below each of ``mask_model.iou_thresholds`` and,
    where the data has true foreground masks, the IoU of the thresholded maps with them. With
    ``mask_model.map_resolution: image`` the maps are uint8 per pixel (``round(255 * M)``);
    with ``feature`` they are the raw float32 Grad-CAM at the feature map's resolution, which
    training expands per batch to the same values (:mod:`dhat.maps`). The foreground
    threshold is a training parameter, ``omega``. The pass goes ``mask_model.batch_size`` images
    at a time: memory is the stored maps plus one batch, whatever the data size.
    """
    settings = MaskModelSettings.from_dict(mask_model)
    torch_device = resolve_device(device)
    model = map_model(mask_model_checkpoint, settings, train_set["images"].shape[1:], torch_device)
    truth = train_set.get("masks")
    n = len(train_set["labels"])
    stored: np.ndarray | None = np.empty(train_set["images"].shape[:3], dtype=np.uint8) if settings.map_resolution == "image" else None
    # Per-image figures go into preallocated arrays: keeping a small tensor per batch alive between the
    # batches' large temporaries fragments the heap, and memory then grows with the data size.
    below = {float(t): np.empty(n, np.float32) for t in settings.iou_thresholds}
    ious = {float(t): np.empty(n, np.float32) for t in settings.iou_thresholds} if truth is not None else {}
    total, pixels = 0.0, 0
    for start, end, maps, raw in _gradcam_batches(model, train_set, torch_device, settings, _progress(mask_model)):
        if raw is None:
            stored[start:end] = quantize_masks(maps).cpu().numpy()  # type: ignore[index]
        else:
            if stored is None:
                stored = np.empty((n, *raw.shape[1:]), dtype=np.float32)
            stored[start:end] = raw.float().cpu().numpy()
        total += float(maps.double().sum())
        pixels += maps.numel()
        fg = None if truth is None else torch.from_numpy(np.asarray(truth[start:end]) >= 128).to(maps.device)
        for omega, shares in below.items():
            shares[start:end] = (maps < omega).flatten(1).float().mean(1).cpu().numpy()
            if fg is not None:
                ious[omega][start:end] = foreground_iou(maps, fg, omega).cpu().numpy()
    if stored is None:  # no training images
        stored = np.empty((0, 1, 1), dtype=np.float32)
    quality: dict[str, Any] = {"n_images": n, "mean_attention": total / max(1, pixels),
                               "map_resolution": settings.map_resolution, "stored_shape": list(stored.shape[1:])}
    for omega, shares in below.items():
        quality[f"background_share@{omega}"] = float(torch.from_numpy(shares).mean()) if n else 0.0
    for omega, values in ious.items():
        quality[f"iou_true_foreground@{omega}"] = float(torch.from_numpy(values).mean())
    if truth is not None:
        logger.info("Grad-CAM foreground vs true foreground: %s", {k: round(v, 3) for k, v in quality.items() if k.startswith("iou")})
    logger.info("Grad-CAM background share (map < omega): %s",
                {k: round(v, 3) for k, v in quality.items() if k.startswith("background_share")})
    logger.info("Grad-CAM maps stored at %s resolution: %s per image, %.1f MB in all", settings.map_resolution,
                "x".join(str(d) for d in stored.shape[1:]), stored.nbytes / 1e6)
    return {"masks": stored}, quality
