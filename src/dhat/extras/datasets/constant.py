"""A read-only value written in the catalog, typically a dataset-factory placeholder.

The study pipeline names its replicates ``study_seed<k>``; the catalog entry::

    "study_seed{seed}.seed":
      type: dhat.extras.datasets.ConstantDataset
      value: "{seed}"
      cast: int

hands each replicate its training seed, so the seed lives in the namespace name and
in no second list.
"""

from __future__ import annotations

from typing import Any, Literal

from kedro.io.core import AbstractDataset, DatasetError

__all__ = ["ConstantDataset", "PathDataset"]

_CASTS = {"int": int, "float": float, "str": str}


class ConstantDataset(AbstractDataset[None, Any]):
    """Loads ``value`` converted with ``cast``; refuses to save."""

    #: Why saving is refused (subclasses say what their value is).
    read_only_reason = "its value is written in the catalog"

    def __init__(self, value: Any, cast: Literal["int", "float", "str"] = "str", metadata: dict[str, Any] | None = None):
        if cast not in _CASTS:
            raise DatasetError(f"{type(self).__name__}: 'cast' must be one of {sorted(_CASTS)}, got {cast!r}")
        try:
            self._value = _CASTS[cast](value)
        except (TypeError, ValueError) as error:
            raise DatasetError(f"{type(self).__name__}: cannot read {value!r} as {cast}") from error
        self.metadata = metadata

    def load(self) -> Any:
        return self._value

    def save(self, data: Any) -> None:
        raise DatasetError(f"{type(self).__name__} is read-only: {self.read_only_reason}")

    def _describe(self) -> dict[str, Any]:
        return {"value": self._value}


class PathDataset(ConstantDataset):
    """Loads its ``filepath`` (made absolute by Kedro, like every catalog path) as a string; refuses to save.

    For files a node manages itself, such as the resumable training state that the
    training node writes during training and that is removed once its outputs are saved::

        "{method}.training_state":
          type: dhat.extras.datasets.PathDataset
          filepath: data/06_models/{method}/training_state.pt
    """

    read_only_reason = "it names a file that a node writes itself"

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        super().__init__(str(filepath), "str", metadata)
