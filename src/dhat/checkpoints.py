"""Checkpoints as plain data: a state dict plus JSON-friendly metadata.

A checkpoint never pickles a module: the architecture is rebuilt from
``metadata["model"]`` with :func:`dhat.models.build_model`, so files load with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from dhat.model_wrappers import wrap_model
from dhat.models import build_model

__all__ = ["model_spec", "build_from_spec", "make_checkpoint", "load_classifier"]


def model_spec(model_params: Mapping[str, Any], dataset_info: Mapping[str, Any]) -> dict[str, Any]:
    """Everything needed to rebuild the architecture: YAML ``model`` section + data facts."""
    params = dict(model_params)
    if "name" not in params:
        raise ValueError("model.name is missing; set it in conf/<env>/parameters.yml (e.g. small_cnn)")
    name = params.pop("name")
    return {
        "name": name,
        "num_classes": int(dataset_info["num_classes"]),
        "in_channels": int(dataset_info["image_shape"][-1]),
        "mean": [float(v) for v in dataset_info["mean"]],
        "std": [float(v) for v in dataset_info["std"]],
        "options": params,
    }


def build_from_spec(spec: Mapping[str, Any]) -> nn.Module:
    """A freshly initialised classifier for ``spec`` (see :func:`model_spec`), wrapped if the spec says so."""
    model = build_model(
        spec["name"],
        num_classes=int(spec["num_classes"]),
        mean=spec["mean"],
        std=spec["std"],
        in_channels=int(spec.get("in_channels", 3)),
        **dict(spec.get("options", {})),
    )
    if spec.get("wrapper"):
        return wrap_model(model, spec["wrapper"])
    return model


def make_checkpoint(state_dict: Mapping[str, torch.Tensor], spec: Mapping[str, Any], **metadata: Any) -> dict[str, Any]:
    """The dict the checkpoint dataset stores: ``{"state_dict", "metadata": {"model": spec, ...}}``."""
    return {"state_dict": dict(state_dict), "metadata": {"model": dict(spec), **metadata}}


def load_classifier(checkpoint: Mapping[str, Any], device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild the classifier of ``checkpoint`` on ``device``, in eval mode."""
    try:
        spec = checkpoint["metadata"]["model"]
        state = checkpoint["state_dict"]
    except (KeyError, TypeError) as error:
        raise ValueError(
            "checkpoint lacks 'state_dict' or 'metadata.model'; it was not written by this project's training nodes"
        ) from error
    model = build_from_spec(spec)
    model.load_state_dict(state)
    return model.to(device).eval()
