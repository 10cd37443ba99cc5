"""Shared evaluation helpers: input checks, eval-mode context, batched prediction, percentages.

Every reported number is computed inside :func:`evaluation_context` (eval mode, fp32,
autocast off, the caller's random state restored) on pixel-scale inputs in ``[0, 1]``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from dhat.attacks import batchnorm_mode
from dhat.evaluation.config import is_int

__all__ = [
    "accuracy",
    "check_batch_size",
    "check_images",
    "check_inputs",
    "check_labels",
    "check_model",
    "evaluation_context",
    "iterate_batches",
    "model_device",
    "percent",
    "predict",
    "predict_raw",
    "subset_indices",
]


def model_device(model: nn.Module) -> torch.device:
    """Device of the first parameter or buffer (CPU for a parameter-free module)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def check_model(model: nn.Module, name: str = "model") -> None:
    if not isinstance(model, nn.Module):
        raise ValueError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    for pname, param in model.named_parameters():
        if param.dtype != torch.float32:
            raise ValueError(
                f"{name} parameter {pname!r} is {param.dtype}; evaluation is fp32 only, call {name}.float() first"
            )


def check_images(images: torch.Tensor, device: torch.device, name: str = "images") -> torch.Tensor:
    """Validate an image batch (float, [N, C, H, W], values in [0, 1], right device); return it as fp32."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a float tensor of shape [N, C, H, W] in [0, 1], got {shape}")
    if images.device != device:
        raise ValueError(f"{name} is on {images.device} but the model is on {device}; move {name} to {device}")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(
            f"{name} must be pixel-scale values in [0, 1] (normalisation is inside the model), "
            f"got range [{images.min().item():.3g}, {images.max().item():.3g}]"
        )
    return images.float()


def check_labels(labels: torch.Tensor, n: int, device: torch.device, name: str = "labels") -> torch.Tensor:
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.dtype != torch.int64:
        desc = f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"{name} must be an int64 tensor of shape [N], got {desc}; use {name}.long()")
    if labels.shape[0] != n:
        raise ValueError(f"{name} has {labels.shape[0]} entries but the images have {n}; pass matching tensors")
    if labels.device != device:
        raise ValueError(f"{name} is on {labels.device} but the model is on {device}; move {name} to {device}")
    return labels


def check_inputs(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, prefix: str = ""
) -> tuple[torch.device, torch.Tensor, torch.Tensor]:
    """Check an fp32 model and a labelled batch on its device; returns ``(device, images as fp32, labels)``.

    ``prefix`` names the arguments in messages (``"train_"`` -> ``train_images``).
    """
    check_model(model)
    device = model_device(model)
    images = check_images(images, device, f"{prefix}images")
    labels = check_labels(labels, images.shape[0], device, f"{prefix}labels")
    return device, images, labels


def check_batch_size(batch_size: int) -> None:
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")


@contextlib.contextmanager
def evaluation_context(model: nn.Module) -> Iterator[torch.device]:
    """Eval mode, autocast off, caller's random state restored afterwards; yields the model's device.

    Every reported number is computed inside this context so that batch-norm
    statistics are frozen, mixed precision cannot leak in from an outer
    autocast region and seeding an evaluation does not disturb training code.
    """
    device = model_device(model)
    fork_devices = [device] if device.type == "cuda" else []
    with (
        batchnorm_mode(model, "eval"),
        torch.autocast(device_type=device.type, enabled=False),
        torch.random.fork_rng(devices=fork_devices),
    ):
        yield device


def iterate_batches(n: int, batch_size: int, desc: str, progress: bool) -> Iterator[tuple[int, int, int]]:
    """(batch index, start, end) over ``n`` items, with an optional tqdm bar."""
    starts = range(0, n, batch_size)
    for index, start in enumerate(tqdm(starts, desc=desc, disable=not progress, leave=False)):
        yield index, start, min(start + batch_size, n)


def predict_raw(model: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits without validation or mode handling (the caller is inside :func:`evaluation_context`)."""
    with torch.no_grad():
        chunks = [model(images[i : i + batch_size]).float() for i in range(0, images.shape[0], batch_size)]
    if chunks:
        return torch.cat(chunks)
    return images.new_zeros((0, 0))


def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits ``[N, K]`` of ``model`` on pixel-scale ``images`` (eval mode, fp32, no autocast, batched)."""
    check_model(model)
    check_batch_size(batch_size)
    images = check_images(images, model_device(model))
    with evaluation_context(model):
        return predict_raw(model, images, batch_size)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    """Clean accuracy in percent (0 for an empty set)."""
    logits = predict(model, images, batch_size)
    labels = check_labels(labels, images.shape[0], model_device(model))
    return percent(logits.argmax(dim=1) == labels) if labels.numel() else 0.0


def percent(correct: torch.Tensor) -> float:
    """Share of ``True`` entries in percent."""
    return 100.0 * correct.double().mean().item() if correct.numel() else 0.0



def subset_indices(n: int, size: int | None, seed: int, device: torch.device) -> torch.Tensor:
    """First ``size`` entries of a seeded permutation of ``range(n)`` (a fixed, reproducible subset)."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    return order[: n if size is None else min(size, n)].to(device)

