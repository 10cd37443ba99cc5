"""Versionable ``.npz`` dataset plus the file plumbing shared with the checkpoint dataset.

Arrays (prepared data splits, adversarial examples, generated images) travel
between pipelines as ``dict[str, np.ndarray]``, optionally grouped one level
deep (``dict[str, dict[str, np.ndarray]]``). They are stored with
``np.savez_compressed`` and loaded (streamed from the file) with ``allow_pickle=False`` so that a data
file can never execute code.

Every save goes to a temporary file next to the target and is then moved into
place, so a crash mid-save (out of disk, a killed job) never leaves a
truncated file that a later pipeline would try to read.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Mapping
from copy import deepcopy
from pathlib import PurePosixPath
from typing import IO, Any

import fsspec
import numpy as np
from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    VersionNotFoundError,
    get_filepath_str,
    get_protocol_and_path,
)

__all__ = ["NpzDataset", "SingleFileDataset", "write_atomically"]

#: Separator between the group name and the array name inside the archive.
KEY_SEPARATOR = "/"

#: Keyword names of ``np.savez_compressed`` itself: an array saved under one of
#: these names would clash with the function's own arguments.
_RESERVED_KEYS = frozenset({"file", "allow_pickle"})

_LOCAL_PROTOCOLS = frozenset({"file", "local"})

ArrayDict = dict[str, Any]  # values: np.ndarray or dict[str, np.ndarray]


def write_atomically(
    fs: fsspec.AbstractFileSystem,
    protocol: str,
    path: str,
    writer: Callable[[IO[bytes]], None],
) -> None:
    """Write ``path`` through ``writer`` so that the target is either complete or absent.

    ``writer`` receives a binary file handle of a temporary file in the same
    folder as ``path``. Only when it returns without error is the temporary
    file moved onto ``path`` (``os.replace`` locally, which is atomic on one
    file system; ``fs.mv`` elsewhere). On error the temporary file is deleted,
    as is the folder if this call created it (e.g. a fresh version folder),
    and the error propagates.

    Args:
        fs: The fsspec file system that holds ``path``.
        protocol: The protocol of ``fs`` (``"file"`` for the local disk).
        path: Target path, without protocol prefix.
        writer: Callable that writes the whole payload to the handle it is given.
    """
    parent = PurePosixPath(path).parent.as_posix()
    name = PurePosixPath(path).name
    if protocol in _LOCAL_PROTOCOLS:
        created_parent = not os.path.isdir(parent)
        os.makedirs(parent, exist_ok=True)
        # A hidden name so that globbing for versions never picks it up.
        fd, tmp_path = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                writer(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_path, path)
        except BaseException:
            _silently(lambda: os.remove(tmp_path))
            if created_parent:
                _silently(lambda: os.rmdir(parent))  # only succeeds when empty
            raise
        return

    # Remote stores rarely offer an atomic rename; a temporary object plus a
    # move still guarantees that readers never see a partial target.
    tmp_path = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
    try:
        with fs.open(tmp_path, "wb") as handle:
            writer(handle)
        fs.mv(tmp_path, path)
    except BaseException:
        _silently(lambda: fs.rm(tmp_path))
        raise


def _silently(action: Callable[[], Any]) -> None:
    """Run a clean-up ``action``, ignoring errors: the original failure matters more."""
    try:
        action()
    except Exception:  # best-effort clean-up: the original error matters more
        pass


class SingleFileDataset(AbstractVersionedDataset[Any, Any]):
    """Shared set-up of the project's single-file datasets: fsspec, versioning, error text.

    Subclasses implement ``load``/``save`` with :meth:`_read_bytes` and
    :meth:`_write`, which add the missing-file message and atomic saving.
    """

    def __init__(  # noqa: PLR0913 - Kedro passes catalog options as arguments
        self,
        filepath: str | os.PathLike[str],
        version: Version | None = None,
        *,
        produced_by: str | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Point the dataset at ``filepath`` (any fsspec URL; local when no protocol).

        Args:
            filepath: Path of the file, e.g. ``data/02_intermediate/train.npz``.
            version: Kedro version (set by ``versioned: true`` in the catalog).
            produced_by: Hint shown when the file is missing, naming what
                creates it, e.g. ``"run `kedro run --pipelines=data_ingestion` first"``.
            credentials: Passed to the fsspec file system constructor.
            fs_args: Extra fsspec file system constructor arguments.
            metadata: Free-form metadata, ignored by Kedro (kedro-viz shows it).
        """
        if not str(filepath):
            raise DatasetError("'filepath' is empty; give the path of the file to read and write")
        if produced_by is not None and not isinstance(produced_by, str):
            raise DatasetError(f"'produced_by' must be a string or None, got {type(produced_by).__name__}")
        protocol, path = get_protocol_and_path(str(filepath), version)
        fs_kwargs = deepcopy(fs_args) or {}
        if protocol in _LOCAL_PROTOCOLS:
            fs_kwargs.setdefault("auto_mkdir", True)
        self._protocol = protocol
        self._fs = fsspec.filesystem(protocol, **(deepcopy(credentials) or {}), **fs_kwargs)
        self._produced_by = produced_by
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=self._fs.exists,
            glob_function=self._fs.glob,
        )

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": self._filepath,
            "protocol": self._protocol,
            "version": self._version,
            "produced_by": self._produced_by,
        }

    def _exists(self) -> bool:
        try:
            load_path = get_filepath_str(self._get_load_path(), self._protocol)
        except DatasetError:
            return False
        return bool(self._fs.exists(load_path))

    def _missing_error(self, where: str) -> DatasetError:
        """A DatasetError for a file that is not there, with how to create it."""
        hint = f" To create it, {self._produced_by}." if self._produced_by else ""
        return DatasetError(f"{type(self).__name__}: no file at '{where}'.{hint}")

    def _load_path_str(self) -> str:
        """The file a load reads (latest or pinned version)."""
        try:
            return get_filepath_str(self._get_load_path(), self._protocol)
        except VersionNotFoundError as error:
            raise self._missing_error(f"{self._filepath} (no saved version)") from error

    def _read_bytes(self) -> bytes:
        """The whole content of the file to load (latest or pinned version)."""
        with self._open_for_read() as handle:
            return handle.read()

    def _open_for_read(self) -> IO[bytes]:
        """A seekable binary handle on the file to load (latest or pinned version), for parsers that stream."""
        load_path = self._load_path_str()
        if not self._fs.exists(load_path):
            raise self._missing_error(load_path)
        return self._fs.open(load_path, "rb")

    def _write(self, writer: Callable[[IO[bytes]], None]) -> None:
        """Save atomically to the save path (a fresh version folder when versioned)."""
        save_path = get_filepath_str(self._get_save_path(), self._protocol)
        write_atomically(self._fs, self._protocol, save_path, writer)
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))

    def _release(self) -> None:
        super()._release()
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))


def _check_array(name: str, value: Any) -> np.ndarray:
    """Return ``value`` if it can be stored without pickle, else raise a helpful error."""
    if not isinstance(value, np.ndarray):
        raise DatasetError(
            f"NpzDataset: entry '{name}' is a {type(value).__name__}, not a numpy array; "
            "convert it with np.asarray(...) before returning it from the node"
        )
    if value.dtype.hasobject:
        raise DatasetError(
            f"NpzDataset: entry '{name}' has dtype object, which needs pickle to load; "
            "store strings as a unicode array (values.astype(str)) and numbers with a numeric dtype"
        )
    return value


def _check_key(name: str, where: str) -> None:
    """Keys must be non-empty strings without the group separator."""
    if not isinstance(name, str) or not name:
        raise DatasetError(f"NpzDataset: {where} key {name!r} must be a non-empty string")
    if KEY_SEPARATOR in name:
        raise DatasetError(
            f"NpzDataset: {where} key '{name}' contains '{KEY_SEPARATOR}', which separates group "
            "and array names in the file; rename it (e.g. with '_')"
        )


def flatten_arrays(data: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Turn a flat or one-level nested dict of arrays into archive entries.

    ``{"train": {"x": a}, "classes": c}`` becomes ``{"train/x": a, "classes": c}``.

    Raises:
        DatasetError: when ``data`` has the wrong shape of nesting or types.
    """
    if not isinstance(data, Mapping):
        raise DatasetError(
            f"NpzDataset can only save a dict of numpy arrays (optionally one level nested), "
            f"got {type(data).__name__}"
        )
    flat: dict[str, np.ndarray] = {}
    for key, value in data.items():
        _check_key(key, "top-level")
        if isinstance(value, Mapping):
            if not value:
                raise DatasetError(
                    f"NpzDataset: group '{key}' is an empty dict, which an .npz file cannot "
                    "represent; drop the group or put at least one array in it"
                )
            for inner_key, inner_value in value.items():
                _check_key(inner_key, f"group '{key}'")
                if isinstance(inner_value, Mapping):
                    raise DatasetError(
                        f"NpzDataset: '{key}{KEY_SEPARATOR}{inner_key}' is a dict; only one level "
                        "of nesting is supported, flatten deeper groups into the key names"
                    )
                name = f"{key}{KEY_SEPARATOR}{inner_key}"
                flat[name] = _check_array(name, inner_value)
        else:
            if key in _RESERVED_KEYS:
                raise DatasetError(
                    f"NpzDataset: top-level key '{key}' is reserved by np.savez_compressed; "
                    "rename it or put it inside a group"
                )
            flat[key] = _check_array(key, value)
    return flat


def unflatten_arrays(flat: Mapping[str, np.ndarray]) -> ArrayDict:
    """Inverse of :func:`flatten_arrays`: ``"group/name"`` entries become nested dicts."""
    result: ArrayDict = {}
    for name, array in flat.items():
        if KEY_SEPARATOR in name:
            group, inner = name.split(KEY_SEPARATOR, 1)
            result.setdefault(group, {})[inner] = array
        else:
            result[name] = array
    return result


class NpzDataset(SingleFileDataset):
    """A (versionable) ``.npz`` file holding a dict of numpy arrays, optionally grouped.

    Catalog example::

        prepared_data:
          type: dhat.extras.datasets.NpzDataset
          filepath: data/02_intermediate/prepared.npz
          produced_by: "run `kedro run --pipelines=data_ingestion` first"
          versioned: true

    Saving accepts ``dict[str, np.ndarray]`` or ``dict[str, dict[str, np.ndarray]]``
    (mixing both is fine); loading returns the same structure. Unicode string
    arrays are allowed; object arrays are refused because they need pickle.
    """

    def load(self) -> ArrayDict:
        """Read the file back into (nested) dicts of arrays, never unpickling anything.

        The archive is read from the file handle array by array, so loading needs the
        arrays' memory and not a second, compressed copy of the whole file.
        """
        with self._open_for_read() as handle, np.load(handle, allow_pickle=False) as archive:
            flat = {name: archive[name] for name in archive.files}
        return unflatten_arrays(flat)

    def save(self, data: ArrayDict) -> None:
        """Validate ``data`` then write it compressed and atomically."""
        flat = flatten_arrays(data)

        def writer(handle: IO[bytes]) -> None:
            np.savez_compressed(handle, allow_pickle=False, **flat)

        self._write(writer)
