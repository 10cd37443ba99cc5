"""Mixed-precision training: autocast for the training forwards (attacks included), a loss scaler for fp16.

Only training runs in reduced precision. Validation (checkpoint selection) and every
reported number are computed in fp32 with autocast off
(:func:`dhat.evaluation.inference.evaluation_context`); the weights themselves stay
fp32 in every mode, so checkpoints do not depend on the training precision.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["PRECISIONS", "autocast", "make_scaler"]

#: ``training.precision`` values: fp32 (no autocast), bf16 (autocast), fp16 (autocast + gradient scaler).
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Autocast to ``precision`` on ``device`` (a no-op for fp32)."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def make_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 (small gradients would flush to zero without it); ``None`` otherwise."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)
