"""Versionable model checkpoint: a tensor state dict plus JSON-like metadata.

The checkpoint deliberately holds plain data only (see ``dhat.checkpoints``):
the architecture is rebuilt from the metadata, so the file loads with
``torch.load(weights_only=True)``, which refuses arbitrary pickled objects.
Saving validates the payload first, because a module or a numpy scalar hidden
in the metadata would only surface later as an unloadable file.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import IO, Any

import torch
from kedro.io.core import DatasetError

from dhat.extras.datasets.arrays import SingleFileDataset

__all__ = ["TorchCheckpointDataset", "validate_checkpoint"]

_REQUIRED_KEYS = frozenset({"state_dict", "metadata"})


def validate_checkpoint(data: Any) -> dict[str, Any]:
    """Check a checkpoint payload and return the form that is written to disk.

    The returned dict has CPU, detached tensors and metadata passed through a
    JSON round trip (tuples become lists, numpy scalars become Python numbers),
    which is exactly what ``weights_only`` loading accepts.

    Raises:
        DatasetError: naming what is wrong and how to fix it.
    """
    if isinstance(data, torch.nn.Module):
        raise DatasetError(
            "TorchCheckpointDataset: got a torch.nn.Module; save "
            "{'state_dict': model.state_dict(), 'metadata': {...}} instead of the module "
            "(modules are never pickled, see dhat.checkpoints.make_checkpoint)"
        )
    if not isinstance(data, Mapping):
        raise DatasetError(
            f"TorchCheckpointDataset: expected a dict with keys 'state_dict' and 'metadata', "
            f"got {type(data).__name__}"
        )
    keys = set(data.keys())
    if keys != _REQUIRED_KEYS:
        missing = sorted(_REQUIRED_KEYS - keys)
        extra = sorted(map(str, keys - _REQUIRED_KEYS))
        raise DatasetError(
            "TorchCheckpointDataset: the checkpoint dict must have exactly the keys "
            f"'state_dict' and 'metadata' (missing: {missing}, unexpected: {extra}); "
            "put extra information inside 'metadata'"
        )

    state_dict = data["state_dict"]
    if not isinstance(state_dict, Mapping):
        raise DatasetError(
            f"TorchCheckpointDataset: 'state_dict' must be a dict of tensors, got "
            f"{type(state_dict).__name__}; use model.state_dict()"
        )
    clean_state: dict[str, torch.Tensor] = {}
    for name, tensor in state_dict.items():
        if not isinstance(name, str):
            raise DatasetError(f"TorchCheckpointDataset: state_dict key {name!r} must be a string")
        if not isinstance(tensor, torch.Tensor):
            raise DatasetError(
                f"TorchCheckpointDataset: state_dict['{name}'] is a {type(tensor).__name__}, "
                "not a torch.Tensor; keep only tensors there and move other values to 'metadata'"
            )
        # CPU copies so the file loads on machines without the training device.
        clean_state[name] = tensor.detach().cpu()

    metadata = data["metadata"]
    if not isinstance(metadata, Mapping):
        raise DatasetError(
            f"TorchCheckpointDataset: 'metadata' must be a dict, got {type(metadata).__name__}"
        )
    try:
        encoded = json.dumps(metadata)
    except (TypeError, ValueError) as error:
        raise DatasetError(
            "TorchCheckpointDataset: 'metadata' is not JSON-serialisable "
            f"({error}); keep only str/int/float/bool/None/list/dict values "
            "(convert tensors and numpy values with .tolist() or float(...))"
        ) from error
    return {"state_dict": clean_state, "metadata": json.loads(encoded)}


class TorchCheckpointDataset(SingleFileDataset):
    """A (versionable) ``torch.save`` file with ``{"state_dict", "metadata"}``.

    Catalog example (one entry covers every method through a factory)::

        "{method}.model":
          type: dhat.extras.datasets.TorchCheckpointDataset
          filepath: data/06_models/{method}/model.pt
          versioned: true

    Loading uses ``map_location="cpu"`` and ``weights_only=True``; the caller
    moves the rebuilt model to its device.
    """

    def load(self) -> dict[str, Any]:
        """Read the checkpoint on CPU with the restricted (weights-only) unpickler."""
        buffer = io.BytesIO(self._read_bytes())
        try:
            checkpoint = torch.load(buffer, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - truncated zip, bad pickle: the same advice
            raise DatasetError(
                f"TorchCheckpointDataset: '{self._load_path_str()}' cannot be read ({type(error).__name__}); the "
                "file is truncated or corrupt. Retrain the method (kedro run --pipelines=train_eval_all "
                "--namespaces=<method>), or load an older version with "
                "--load-versions=<method>.<model_best|model_last>:<version folder beside this one>"
            ) from None
        if not isinstance(checkpoint, dict) or set(checkpoint) != _REQUIRED_KEYS:
            raise DatasetError(
                f"TorchCheckpointDataset: '{self._filepath}' does not hold a "
                "{'state_dict', 'metadata'} dict; it was not written by this dataset"
            )
        return checkpoint

    def save(self, data: dict[str, Any]) -> None:
        """Validate ``data``, then write it atomically with ``torch.save``."""
        payload = validate_checkpoint(data)

        def writer(handle: IO[bytes]) -> None:
            torch.save(payload, handle)

        self._write(writer)
