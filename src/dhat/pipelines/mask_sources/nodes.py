"""Nodes of the ``mask_sources`` pipeline: each source's maps of the training images, DHAT trained with them,
a light evaluation, and the comparison table (paper table 8)."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from dhat.attention.reference_model import MaskModelSettings, map_model
from dhat.config import resolve_device
from dhat.data.external_masks import EXTERNAL_MASKS_KEY
from dhat.pipelines.training.nodes import train_method_with
from dhat.stats.sweeps import MaskSourceSettings, mask_source_table, score_checkpoint

logger = logging.getLogger(__name__)

#: The source that is the data's own foreground masks rather than an attribution of the mask model.
TRUE_SOURCE = "true"
#: The source that is the masks of ``data.external_masks`` (computed elsewhere, e.g. by SAM or SOLO).
EXTERNAL_SOURCE = "external"
#: Where each of the data's own mask sources lives in the training set, and how to get it there.
_DATA_MASKS = {TRUE_SOURCE: ("masks", "the training data has no true foreground masks (only the embedded data set has "
                                      "them); remove 'true' from mask_sources.sources"),
               EXTERNAL_SOURCE: (EXTERNAL_MASKS_KEY, "the training data has no external masks; set data.external_masks "
                                                    "and rerun data_ingestion, or remove 'external' from mask_sources.sources")}


def compute_source_maps(source: str, mask_model_checkpoint: dict[str, Any], train_set: dict[str, np.ndarray],
                        mask_sources: dict[str, Any], mask_model: dict[str, Any],
                        device: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The maps of every training image from ``source`` on the natural reference model, and the time they took.

    ``true`` and ``external`` read the data's own masks (an error names the fix when the data
    has none); the attribution sources run ``mask_sources.batch_size`` images at a time, at
    the mask model's ``mask_model.input_size`` when it has one.
    """
    settings = MaskSourceSettings.from_dict(mask_sources)
    if source in _DATA_MASKS:
        key, missing = _DATA_MASKS[source]
        if train_set.get(key) is None:
            raise ValueError(f"mask_sources.sources lists {source!r}, but {missing}")
        return {"masks": np.asarray(train_set[key], dtype=np.uint8)}, {"source": source, "map_seconds": 0.0}
    from dhat.attention.attributions import stored_attention_maps  # noqa: PLC0415 - captum loads only in this pipeline

    torch_device = resolve_device(device)
    model = map_model(mask_model_checkpoint, MaskModelSettings.from_dict(mask_model), train_set["images"].shape[1:],
                      torch_device)
    started = time.perf_counter()
    maps = stored_attention_maps(source, model, train_set, torch_device, batch_size=settings.batch_size,
                                 **dict(settings.options.get(source, {})))
    seconds = time.perf_counter() - started  # the maps are on the host: every device computation has finished
    logger.info("%s maps of %d training images in %.1f s", source, len(maps), seconds)
    return {"masks": maps}, {"source": source, "map_seconds": seconds}


def train_with_source(source: str, mask_sources: dict[str, Any], **inputs: Any):
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
