"""Project-local Kedro datasets.

Catalog ``type:`` strings: ``dhat.extras.datasets.NpzDataset``, ``dhat.extras.datasets.ImageSetDataset`` (a data split, or its index of files),
``dhat.extras.datasets.TorchCheckpointDataset``, ``dhat.extras.datasets.LatestResultsDataset``,
``dhat.extras.datasets.ConstantDataset``, ``dhat.extras.datasets.PathDataset`` and
``dhat.extras.datasets.UnitDataset`` (one entry per output of every unit).
"""

from dhat.extras.datasets.arrays import NpzDataset
from dhat.extras.datasets.checkpoint import TorchCheckpointDataset
from dhat.extras.datasets.constant import ConstantDataset, PathDataset
from dhat.extras.datasets.image_sets import ImageSetDataset
from dhat.extras.datasets.results import LatestResultsDataset
from dhat.extras.datasets.units import UnitDataset

__all__ = ["ConstantDataset", "ImageSetDataset", "LatestResultsDataset", "NpzDataset", "PathDataset", "TorchCheckpointDataset", "UnitDataset"]
