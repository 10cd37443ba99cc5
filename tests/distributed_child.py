"""Entry points of data-parallel workers for tests/test_distributed.py (spawned workers import them)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dhat.engine.distributed import Distributed
from dhat.engine.fitting import fit
from dhat.engine.recipe import TrainingConfig
from dhat.engine.training import train_model
from dhat.methods import create_method
from dhat.models import build_model
from dhat.tensors import to_device_set

N_TRAIN = 48


def tiny_data(masks: bool = False) -> tuple[dict, dict, dict, dict | None]:
    """48 training and 12 validation 8x8 images of 3 classes with a learnable cue (and masks for DHAT)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    images = rng.integers(0, 256, (60, 8, 8, 3), dtype=np.uint8)
    images[..., 0] = (labels * 100)[:, None, None]
    info = {"num_classes": 3, "image_shape": [8, 8, 3], "mean": [0.5] * 3, "std": [0.25] * 3}
    train, val = {"images": images[:48], "labels": labels[:48]}, {"images": images[48:], "labels": labels[48:]}
    maps = None
    if masks:
        truth = np.zeros((48, 8, 8), np.uint8)
        truth[:, 2:6, 2:6] = 255
        train["masks"] = truth
        maps = {"masks": rng.integers(0, 256, (48, 8, 8), dtype=np.uint8)}
    return train, val, info, maps


def fit_worker(method: dict[str, Any], epochs: int) -> tuple[dict, dict, Any]:
    """:func:`dhat.engine.fitting.fit` with ``training.devices: 2`` inside a worker (no second launch)."""
    torch.set_num_threads(1)
    train, val, info, maps = tiny_data(masks=method["name"] == "dhat")
    training = {"epochs": epochs, "batch_size": 16, "val_steps": 2, "progress": False, "crop_padding": 1, "devices": 2}
    return fit(train, val, maps, info, method, {"name": "small_cnn", "width": 4}, training, "cpu")


def engine_worker(name: str, params: dict[str, Any], epochs: int) -> dict[str, Any]:
    """:func:`dhat.engine.training.train_model` in a worker; returns the weights and the method's per-sample state."""
    torch.set_num_threads(1)
    train, val, _, _ = tiny_data()
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=3, width=4)
    method = create_method(name, params)
    config = TrainingConfig.from_dict({"epochs": epochs, "batch_size": 16, "val_steps": 2, "progress": False,
                                       "crop_padding": 1, "devices": 2})
    cpu = torch.device("cpu")
    result = train_model(model, method, to_device_set(train, cpu, name="train"), to_device_set(val, cpu, name="val"),
                         config, distributed=Distributed.current())
    extra = {}
    if name == "cfa":
        extra = {"class_accuracy": method.class_accuracy, "count": method._count}
    if name == "sglr":
        extra = {"soft_labels": method.soft_labels, "initialised": method.initialised}
    return {"last": result.last_state, "history": result.history, **extra}
