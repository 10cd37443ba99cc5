"""Nodes of the ``mask_sources`` pipeline: each source's maps of the training images, DHAT trained with them,
a light evaluation, and the comparison table (paper table 8)."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from dhat.attention import quantize_masks
from dhat.checkpoints import load_classifier
from dhat.config import resolve_device
from dhat.pipelines.training.nodes import train_method_with
from dhat.sweeps import MaskSourceSettings, mask_source_table, score_checkpoint
from dhat.tensors import to_device_set

logger = logging.getLogger(__name__)

#: The source that is the data's own foreground masks rather than an attribution of the mask model.
TRUE_SOURCE = "true"


def compute_source_maps(source: str, mask_model_checkpoint: dict[str, Any], train_set: dict[str, np.ndarray],
                        mask_sources: dict[str, Any], device: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The maps of every training image from ``source`` on the natural reference model, and the time they took.

    ``true`` reads the data's foreground masks (an error names the data when it has none).
    """
    settings = MaskSourceSettings.from_dict(mask_sources)
    if source == TRUE_SOURCE:
        if train_set.get("masks") is None:
            raise ValueError("mask_sources.sources lists 'true', but the training data has no true foreground masks "
                             "(only the embedded data set has them); remove it from mask_sources.sources")
        return {"masks": np.asarray(train_set["masks"], dtype=np.uint8)}, {"source": source, "map_seconds": 0.0}
    from dhat.attributions import attention_maps  # noqa: PLC0415 - captum loads only in this pipeline

    torch_device = resolve_device(device)
    model = load_classifier(mask_model_checkpoint, torch_device)
    data = to_device_set(train_set, torch_device, name="train_set")
    started = time.perf_counter()
    maps = attention_maps(source, model, data.float_images(), data.labels, batch_size=settings.batch_size,
                          **dict(settings.options.get(source, {})))
    if torch_device.type == "cuda":
        import torch  # noqa: PLC0415

        torch.cuda.synchronize(torch_device)
    seconds = time.perf_counter() - started
    logger.info("%s maps of %d training images in %.1f s", source, len(data), seconds)
    return {"masks": quantize_masks(maps).cpu().numpy()}, {"source": source, "map_seconds": seconds}


def train_with_source(source: str, mask_sources: dict[str, Any], *inputs: Any):
    """:func:`~dhat.pipelines.training.nodes.train_method` on this source's maps (``true``: the exact true background)."""
    settings = MaskSourceSettings.from_dict(mask_sources)
    mask_source = "true" if source == TRUE_SOURCE else "gradcam"
    return train_method_with(inputs, seed=settings.seed, method_params={"mask_source": mask_source})


def evaluate_source(source: str, mask_sources: dict[str, Any], map_summary: dict[str, Any],
                    model_best: dict[str, Any], test_set: dict[str, np.ndarray], evaluation: dict[str, Any],
                    device: str) -> dict[str, Any]:
    """Clean and the sweep's attacks on every test image, with the masks' coverage and IoU used in training."""
    settings = MaskSourceSettings.from_dict(mask_sources)
    result = score_checkpoint(model_best, test_set, evaluation, settings.attacks, device)
    return {"source": source, "seed": settings.seed, "map_seconds": map_summary["map_seconds"],
            "masks": model_best["metadata"].get("masks"), **result}


def tabulate_mask_sources(**unit_metrics: dict[str, Any]) -> pd.DataFrame:
    """One row per source (``data/08_reporting/mask_sources/mask_sources.csv``), paired against Grad-CAM."""
    return mask_source_table(list(unit_metrics.values()))
