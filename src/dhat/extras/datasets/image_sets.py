"""The ``{split}_set`` files: an image set's arrays, or, in stream mode, the index of its image files.

A memory-mode set is stored as :class:`~dhat.extras.datasets.arrays.NpzDataset` stores any
dict of arrays. A streamed set (its ``images`` a :class:`dhat.data.files.FileImages`) is
stored as its index (:func:`dhat.data.storage.image_set_to_arrays`): a few bytes per image,
no pixels; loading gives the streamed set back. Both load without pickle.
"""

from __future__ import annotations

from typing import Any

from dhat.data.storage import arrays_to_image_set, image_set_to_arrays
from dhat.extras.datasets.arrays import NpzDataset

__all__ = ["ImageSetDataset"]


class ImageSetDataset(NpzDataset):
    """An ``.npz`` image set that may be an index of image files (``data.storage: stream``)."""

    def load(self) -> dict[str, Any]:
        return arrays_to_image_set(super().load())

    def save(self, data: dict[str, Any]) -> None:
        super().save(image_set_to_arrays(data))
