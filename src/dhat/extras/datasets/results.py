"""Read-only collection of the newest per-method results found on disk.

The report must summarise whichever methods have been evaluated so far, also
when ``kedro run --namespaces=...`` ran only some of them, so it cannot take
every namespace's output as a node input. Instead it reads this dataset, which
scans ``<path>/<method>/<filename>`` for each method folder and accepts both
Kedro's versioned layout (``<path>/<method>/<filename>/<version>/<filename>``,
newest version wins) and a plain, unversioned file at the same place.
"""

from __future__ import annotations

import io
import json
import os
from copy import deepcopy
from pathlib import PurePosixPath
from typing import Any, Literal

import fsspec
import numpy as np
import pandas as pd
import torch
from kedro.io.core import AbstractDataset, DatasetError, get_protocol_and_path

from dhat.extras.datasets.arrays import unflatten_arrays

__all__ = ["LatestResultsDataset"]

_LOADERS = ("json", "csv", "checkpoint", "npz")


def _name(entry: dict[str, Any]) -> str:
    """Last path component of an fsspec listing entry."""
    return PurePosixPath(str(entry["name"]).rstrip("/")).name


class LatestResultsDataset(AbstractDataset[None, dict[str, Any]]):
    """``{method: result}`` with the newest result file of every method under ``path``.

    Catalog example::

        all_metrics:
          type: dhat.extras.datasets.LatestResultsDataset
          path: data/08_reporting/metrics
          result_file: metrics.json
          loader: json

    Results are parsed JSON for ``loader="json"``, a pandas DataFrame for
    ``loader="csv"``, a checkpoint dict or a dict of numpy arrays (``"npz"``). Methods without a result are absent; an empty or missing
    ``path`` loads as ``{}``. Versions are compared as strings, which orders
    Kedro's ``YYYY-MM-DDThh.mm.ss.sssZ`` version names by time.
    """

    def __init__(  # noqa: PLR0913 - Kedro passes catalog options as arguments
        self,
        path: str | os.PathLike[str],
        result_file: str,
        loader: Literal["json", "csv", "checkpoint", "npz"] = "json",
        *,
        load_args: dict[str, Any] | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Configure where to look and how to parse.

        Args:
            path: Folder holding one sub-folder per method.
            result_file: Name of the result file of each method, e.g. ``metrics.json``.
            loader: ``"json"`` (dict), ``"csv"`` (DataFrame) or ``"checkpoint"`` (a
                ``{state_dict, metadata}`` dict loaded with ``weights_only=True``) or
                ``"npz"`` (a dict of arrays, as :class:`NpzDataset` writes it; never unpickled).
            load_args: Extra keyword arguments for ``json.loads`` / ``pd.read_csv``.
            credentials: Passed to the fsspec file system constructor.
            fs_args: Extra fsspec file system constructor arguments.
            metadata: Free-form metadata, ignored by Kedro.
        """
        if not str(path):
            raise DatasetError("LatestResultsDataset: 'path' is empty; give the folder of per-method results")
        if not isinstance(result_file, str) or not result_file or "/" in result_file or "\\" in result_file:
            raise DatasetError(
                f"LatestResultsDataset: 'result_file' must be a bare file name such as 'metrics.json', got {result_file!r}"
            )
        if loader not in _LOADERS:
            raise DatasetError(f"LatestResultsDataset: 'loader' must be one of {list(_LOADERS)}, got {loader!r}")
        protocol, fs_path = get_protocol_and_path(str(path))
        self._protocol = protocol
        self._fs = fsspec.filesystem(protocol, **(deepcopy(credentials) or {}), **(deepcopy(fs_args) or {}))
        self._path = PurePosixPath(fs_path)
        self._filename = result_file
        self._loader = loader
        self._load_args = deepcopy(load_args) or {}
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {
            "path": self._path,
            "protocol": self._protocol,
            "result_file": self._filename,
            "loader": self._loader,
            "load_args": self._load_args,
        }

    def latest_files(self) -> dict[str, str]:
        """``{method: path of its newest result file}``, sorted by method name."""
        root = self._path.as_posix()
        if not self._fs.exists(root):
            return {}
        if not self._fs.isdir(root):
            raise DatasetError(
                f"LatestResultsDataset: 'path' {root} is a file; point it at the folder that "
                "holds one sub-folder per method"
            )
        found: dict[str, str] = {}
        for entry in self._fs.ls(root, detail=True):
            method = _name(entry)
            # Hidden entries are temporary files of interrupted saves, not methods.
            if entry.get("type") != "directory" or method.startswith("."):
                continue
            newest = self._newest_file(f"{root}/{method}/{self._filename}")
            if newest is not None:
                found[method] = newest
        return dict(sorted(found.items()))

    def _newest_file(self, target: str) -> str | None:
        """The plain file ``target``, or the file in its newest version folder, or None."""
        if not self._fs.exists(target):
            return None
        if not self._fs.isdir(target):
            return target
        versions = sorted(
            (_name(entry) for entry in self._fs.ls(target, detail=True) if entry.get("type") == "directory"),
            reverse=True,
        )
        for version in versions:
            # A version folder without its file is the remnant of a failed save: skip it.
            candidate = f"{target}/{version}/{self._filename}"
            if self._fs.isfile(candidate):
                return candidate
        return None

    def _parse(self, file_path: str) -> Any:
        """Parse one result file with the configured loader."""
        with self._fs.open(file_path, "rb") as handle:
            if self._loader == "json":
                return json.loads(handle.read().decode("utf-8"), **self._load_args)
            if self._loader == "checkpoint":
                # Same safe format as TorchCheckpointDataset: tensors and plain data only.
                return torch.load(io.BytesIO(handle.read()), map_location="cpu", weights_only=True)
            if self._loader == "npz":
                with np.load(io.BytesIO(handle.read()), allow_pickle=False) as archive:
                    return unflatten_arrays({name: archive[name] for name in archive.files})
            return pd.read_csv(handle, **self._load_args)

    def load(self) -> dict[str, Any]:
        """Parse the newest result of every method that has one."""
        results: dict[str, Any] = {}
        for method, file_path in self.latest_files().items():
            try:
                results[method] = self._parse(file_path)
            except Exception as error:  # re-raised below with the file named
                raise DatasetError(
                    f"LatestResultsDataset: cannot parse {file_path} as {self._loader} ({error}); "
                    "delete or fix that file, or re-run the evaluation that writes it"
                ) from error
        return results

    def save(self, data: Any) -> None:
        """Refuse: results are written by each method's own (versioned) dataset."""
        raise DatasetError(
            "LatestResultsDataset is read-only: save each method's result through its own "
            f"dataset under '{self._path}/<method>/{self._filename}' instead"
        )

    def _exists(self) -> bool:
        return bool(self.latest_files())
