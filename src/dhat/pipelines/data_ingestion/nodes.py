"""Nodes of the ``data_ingestion`` pipeline: one call into :mod:`dhat.data` per source."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from dhat.data import concat_sets, load_extra_npz
from dhat.data.registry import load_source

logger = logging.getLogger(__name__)

ImageSet = dict[str, np.ndarray]


def _channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 NHWC images, in [0, 1] units (for the model's normalisation)."""
    pixels = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    return pixels.mean(axis=0).round(6).tolist(), pixels.std(axis=0).clip(min=1e-3).round(6).tolist()


def ingest_data(data: dict[str, Any]) -> tuple[ImageSet, ImageSet, ImageSet, dict[str, ImageSet], dict[str, Any]]:
    """Load or generate the configured data set and split it.

    Returns the train, validation (held out from train with ``data.seed``) and
    test sets, the analysis variants of the test set (embedded data only; empty
    otherwise) and a description (class names, sizes, normalisation statistics).
    """
    source = data.get("source", "embedded")
    seed = int(data.get("seed", 0))
    loaded = load_source(data)
    train, val, test, variants, class_names = loaded.train, loaded.val, loaded.test, loaded.variants, loaded.class_names
    if data.get("extra_npz"):
        extra = load_extra_npz(str(data["extra_npz"]))
        logger.info("Appending %d extra training images from %s", len(extra["labels"]), data["extra_npz"])
        train = concat_sets(train, extra)
    mean, std = _channel_stats(train["images"])
    info = {
        "source": source,
        "seed": seed,
        "class_names": list(class_names),
        "num_classes": len(class_names),
        "image_shape": list(train["images"].shape[1:]),
        "sizes": {"train": len(train["labels"]), "val": len(val["labels"]), "test": len(test["labels"])},
        "mean": mean,
        "std": std,
        "has_true_masks": "masks" in train,
        "variants": sorted(variants),
    }
    logger.info("Data %s: %s", source, info["sizes"])
    return train, val, test, variants, info
