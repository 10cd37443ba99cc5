"""Nodes of the ``training`` pipeline (one namespace per method)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from dhat.checkpoints import build_from_spec, make_checkpoint, model_spec
from dhat.config import resolve_device
from dhat.methods import create_method
from dhat.tensors import to_device_set
from dhat.training import TrainingConfig, seed_everything, train_model

logger = logging.getLogger(__name__)


def split_method_params(method_params: dict[str, Any], section: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``{name, params, training}`` of a method namespace -> (registry name, hyper-parameters, training overrides)."""
    if "name" not in method_params:
        raise ValueError(f"{section}.name is missing: name the training method (e.g. pgd_at, dhat)")
    unknown = set(method_params) - {"name", "params", "training"}
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(f'{section}.{k}' for k in sorted(unknown))}; use name, params, training")
    return method_params["name"], dict(method_params.get("params") or {}), dict(method_params.get("training") or {})


def fit(
    train_set: dict[str, np.ndarray],
    val_set: dict[str, np.ndarray],
    attention_masks: dict[str, np.ndarray] | None,
    dataset_info: dict[str, Any],
    method_params: dict[str, Any],
    model_params: dict[str, Any],
    training_params: dict[str, Any],
    device: str,
    label: str,
) -> tuple[dict[str, Any], dict[str, Any], pd.DataFrame]:
    """Train one model and return the selected and last checkpoints and the history table.

    The Kedro node of every method namespace (``label`` = the namespace) and of the mask model.
    """
    name, hyper, overrides = split_method_params(method_params, f"{label}.method")
    method = create_method(name, hyper, section=f"{label}.method.params")
    config = TrainingConfig.from_dict({**training_params, **overrides}, section="training")
    torch_device = resolve_device(device)
    masks = attention_masks["masks"] if (attention_masks is not None and method.needs_masks) else None
    train = to_device_set(train_set, torch_device, masks=masks, name="train_set")
    if not method.needs_masks:
        train.masks = None
    val = to_device_set(val_set, torch_device, name="val_set")
    spec = model_spec(model_params, dataset_info)
    wrapper = method.model_wrapper()
    if wrapper:
        spec["wrapper"] = wrapper
    seed_everything(config.seed)
    model = build_from_spec(spec)
    logger.info("Training %s (%s) on %s for %d epochs", label, name, torch_device, config.epochs)
    result = train_model(model, method, train, val, config, description=label)
    common = {
        "label": label,
        "method": method.describe(),
        "training": {k: v for k, v in vars(config).items()},
        "best_epoch": result.best_epoch,
        "diverged_epoch": result.diverged_epoch,
        "weights": method.evaluated_weights_note or "trained model",
        "selected_on": config.select_on,
        "epochs": config.epochs,
    }
    best = make_checkpoint(result.best_state, spec, checkpoint="best", epoch=result.best_epoch, **common)
    last_epoch = config.epochs if result.diverged_epoch is None else result.diverged_epoch
    last = make_checkpoint(result.last_state, spec, checkpoint="last", epoch=last_epoch, **common)
    history = pd.DataFrame(result.history)
    history.insert(0, "method", label)
    return best, last, history

