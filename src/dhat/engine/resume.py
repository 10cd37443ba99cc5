"""Resumable training: the whole training state, written atomically at epoch ends, and read back.

A long run (100 epochs of a WRN on CIFAR) must survive a crash, a pre-empted cloud
instance or a Ctrl-C. Every ``checkpoint_every`` epochs the engine writes one file
holding everything the next epoch depends on: weights, optimizer, scheduler, every
random state (Python, numpy, torch CPU and CUDA, the data-order generator), the
method's own state (CFA's class accuracies and weight average, SGLR's soft labels),
the history and the best checkpoint so far. A rerun with the same configuration
continues from the last completed epoch and ends with the same weights as a run that
was never interrupted; the file carries a fingerprint of the configuration and the
data, and a state with another fingerprint is not used.

The file is written to a temporary name and renamed, so a crash while writing leaves
the previous state intact. A file that cannot be read is set aside (``*.corrupt``)
with a warning, and training starts fresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["STATE_FORMAT", "ResumeSettings", "fingerprint", "array_digest", "capture_rng", "restore_rng",
           "save_state", "load_state"]

logger = logging.getLogger(__name__)

#: Version of the state file's layout; a file of another version is not resumed from.
STATE_FORMAT = 1


@dataclass(frozen=True)
class ResumeSettings:
    """Where the training state of one run lives and what it must match.

    Attributes:
        path: the state file (beside the run's checkpoints).
        fingerprint: :func:`fingerprint` of the configuration and data of this run.
        every: write the state every this many epochs (0: never).
        resume: read an existing state (``False``: start fresh, overwriting it).
    """

    path: Path
    fingerprint: str
    every: int = 1
    resume: bool = True


def array_digest(array: np.ndarray | torch.Tensor | None) -> str:
    """SHA-256 of an array's dtype, shape and bytes (``"none"`` for ``None``)."""
    if array is None:
        return "none"
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype}{array.shape}".encode())
    # The array's own buffer, in slices: no copy of a multi-gigabyte training set.
    flat = array.reshape(-1).view(np.uint8)
    step = 64 * 2**20
    for start in range(0, flat.shape[0], step):
        digest.update(memoryview(flat[start : start + step]))
    return digest.hexdigest()


def fingerprint(**parts: Any) -> str:
    """A short hash of JSON-serialisable ``parts`` (configuration sections, data digests)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def capture_rng(data_generator: torch.Generator) -> dict[str, Any]:
    """Every random state the next epoch depends on, in a form ``torch.load(weights_only=True)`` reads."""
    numpy_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(numpy_state[1].astype(np.int64)), "pos": int(numpy_state[2]),
                  "has_gauss": int(numpy_state[3]), "cached_gaussian": float(numpy_state[4])},
        "torch": torch.get_rng_state(),
        "data": data_generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any], data_generator: torch.Generator) -> None:
    """Inverse of :func:`capture_rng`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["key"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    data_generator.set_state(state["data"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(settings: ResumeSettings, state: Mapping[str, Any]) -> None:
    """Write ``state`` (with the format and fingerprint) atomically: a temporary file, then a rename."""
    path = Path(settings.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save({**state, "format": STATE_FORMAT, "fingerprint": settings.fingerprint}, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_state(settings: ResumeSettings, label: str) -> dict[str, Any] | None:
    """The saved state of this run, or ``None`` (with a log line saying why) when there is none to resume.

    A different fingerprint or format means another configuration: training starts fresh.
    A file that cannot be read (truncated, corrupt) is renamed to ``<name>.corrupt`` and
    training starts fresh with a warning.
    """
    path = Path(settings.path)
    if not path.exists():
        return None
    if not settings.resume:
        logger.info("%s: training.resume is false; starting fresh (the state in %s will be replaced)", label, path)
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or "epoch" not in state:
            raise ValueError("not a training state")
    except Exception as error:  # noqa: BLE001 - any unreadable file is set aside the same way
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        logger.warning("%s: the training state %s could not be read (%s); it was moved to %s and training starts "
                       "fresh", label, path, type(error).__name__, aside)
        return None
    if state.get("format") != STATE_FORMAT or state.get("fingerprint") != settings.fingerprint:
        logger.info("%s: the training state in %s belongs to another configuration or data (fingerprint %s, this "
                    "run %s); starting fresh", label, path, state.get("fingerprint"), settings.fingerprint)
        return None
    return state
