"""Nodes of the ``data_ingestion`` pipeline: one call into :mod:`dhat.data` per source."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from dhat.data import (
    DIGIT_CLASS_NAMES,
    concat_sets,
    load_extra_npz,
    load_image_folder,
    load_torchvision_cifar,
    make_digit_texture_benchmark,
    split_train_val,
)

logger = logging.getLogger(__name__)

SOURCES = ("embedded", "cifar10", "cifar100", "image_folder")
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
    variants: dict[str, ImageSet] = {}
    if source == "embedded":
        sets = make_digit_texture_benchmark(seed=seed, **data.get("embedded", {}))
        train, val, test = sets["train"], sets["val"], sets["test"]
        variants = {name: value for name, value in sets.items() if name.startswith("test_")}
        class_names = list(DIGIT_CLASS_NAMES)
    else:
        if source in ("cifar10", "cifar100"):
            full_train, test, class_names = load_torchvision_cifar(
                source, root=str(data.get("root", "data/01_raw")), download=bool(data.get("download", True))
            )
        elif source == "image_folder":
            if not data.get("root"):
                raise ValueError("data.root must name the image folder (<root>/{train,test}/<class>/*) for source image_folder")
            full_train, test, class_names = load_image_folder(str(data["root"]), image_size=data.get("image_size"))
        else:
            raise ValueError(f"data.source={source!r} is not supported; choose one of {', '.join(SOURCES)}")
        train, val = split_train_val(full_train, val_size=data.get("val_size", 0.02), seed=seed)
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
