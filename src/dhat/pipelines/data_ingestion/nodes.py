"""Nodes of the ``data_ingestion`` pipeline: one call into :mod:`dhat.data` per source."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from dhat.data import concat_sets, load_extra_npz
from dhat.data.registry import EXTERNAL_MASKS_KEY, load_source, source_provides
from dhat.data.statistics import channel_statistics
from dhat.data.storage import choose_storage

logger = logging.getLogger(__name__)

ImageSet = dict[str, np.ndarray]


def ingest_data(data: dict[str, Any], device: str = "auto") -> tuple[ImageSet, ImageSet, ImageSet, dict[str, ImageSet],
                                                dict[str, ImageSet], dict[str, Any]]:
    """Load or generate the configured data set and split it.

    Returns the train, validation (held out from train with ``data.seed``) and
    test sets, the analysis variants of the test set and of the validation set
    (embedded data only: the decorrelated validation split tuning's second
    protocol scores on; empty otherwise) and a description (class names, sizes,
    normalisation statistics). ``device`` (the run's) sizes ``data.storage: auto``.
    """
    source = data.get("source", "embedded")
    seed = int(data.get("seed", 0))
    loaded = load_source(data, device)
    train, val, test, variants, class_names = loaded.train, loaded.val, loaded.test, loaded.variants, loaded.class_names
    val_variants = loaded.val_variants
    storage = loaded.storage or choose_storage(
        data.get("storage", "auto"), source, sum(int(s["images"].nbytes) for s in (train, val, test)))
    logger.info("Data storage: %s (%s)", storage.mode, storage.reason)
    if data.get("extra_npz") and storage.mode == "stream":
        raise ValueError("data.extra_npz appends arrays to the training images, which data.storage: stream keeps in "
                         "their files; set data.storage: memory to use extra training data")
    if data.get("extra_npz"):
        if EXTERNAL_MASKS_KEY in train:
            raise ValueError("data.extra_npz and data.external_masks cannot be combined: the external masks cover the "
                             "source's training images only; drop one of the two")
        extra = load_extra_npz(str(data["extra_npz"]))
        logger.info("Appending %d extra training images from %s", len(extra["labels"]), data["extra_npz"])
        train = concat_sets(train, extra)
    mean, std = channel_statistics(train["images"])
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
        "storage": storage.mode,
        "storage_reason": storage.reason,
        "selection": {key: data.get(key) for key in ("val_size", "train_size", "test_size")},
        "variants": sorted(variants),
        "val_variants": sorted(val_variants),
    }
    logger.info("Data %s: %s (%s)", source, info["sizes"],
                ", ".join(f"{k}={v}" for k, v in info["selection"].items() if v is not None) or "every image")
    return train, val, test, variants, val_variants, info
