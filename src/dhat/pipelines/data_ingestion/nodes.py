"""Nodes of the ``data_ingestion`` pipeline: one call into :mod:`dhat.data` per source."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from dhat.data import concat_sets, load_extra_npz
from dhat.data.registry import EXTERNAL_MASKS_KEY, load_source, source_provides

logger = logging.getLogger(__name__)

ImageSet = dict[str, np.ndarray]


#: Bytes of uint8 images one step of a pass over a data set reads (the statistics' working memory).
CHUNK_BYTES = 64 * 2**20


def _channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) std of uint8 NHWC images, in [0, 1] units (the model's normalisation).

    Exact and in chunks: integer sums of the pixel values and of their squares, so memory
    stays a few chunks of uint8 pixels whatever the data size, and the result does not
    depend on the chunking (no float rounding accumulates).
    """
    channels = images.shape[-1]
    per_image = max(1, int(np.prod(images.shape[1:])))
    step = max(1, CHUNK_BYTES // per_image)
    total = np.zeros(channels, dtype=object)  # Python integers: no overflow at any size
    squares = np.zeros(channels, dtype=object)
    for start in range(0, images.shape[0], step):
        chunk = images[start : start + step].reshape(-1, channels).astype(np.int64)
        total += chunk.sum(axis=0).astype(object)
        squares += np.einsum("ij,ij->j", chunk, chunk).astype(object)
    count = int(images.shape[0]) * (per_image // channels)
    if count == 0:
        raise ValueError("the training split holds no images; check data.train_size and data.val_size")
    mean = [float(s) / (255.0 * count) for s in total]
    # count * sum(x^2) - (sum x)^2 = count^2 * variance, exactly, in integers.
    std = [math.sqrt(int(count * q - s * s)) / (255.0 * count) for s, q in zip(total, squares, strict=True)]
    return [round(m, 6) for m in mean], [round(max(v, 1e-3), 6) for v in std]


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
        if EXTERNAL_MASKS_KEY in train:
            raise ValueError("data.extra_npz and data.external_masks cannot be combined: the external masks cover the "
                             "source's training images only; drop one of the two")
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
        "has_external_masks": EXTERNAL_MASKS_KEY in train,
        "provides": sorted(source_provides(data)),
        "selection": {key: data.get(key) for key in ("val_size", "train_size", "test_size")},
        "variants": sorted(variants),
    }
    logger.info("Data %s: %s (%s)", source, info["sizes"],
                ", ".join(f"{k}={v}" for k, v in info["selection"].items() if v is not None) or "every image")
    return train, val, test, variants, info
