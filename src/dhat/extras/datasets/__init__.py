"""Project-local Kedro datasets.

Catalog ``type:`` strings: ``dhat.extras.datasets.NpzDataset``,
``dhat.extras.datasets.TorchCheckpointDataset``, ``dhat.extras.datasets.LatestResultsDataset``,
``dhat.extras.datasets.ConstantDataset`` and ``dhat.extras.datasets.PathDataset``.
"""

from dhat.extras.datasets.arrays import NpzDataset
from dhat.extras.datasets.checkpoint import TorchCheckpointDataset
from dhat.extras.datasets.constant import ConstantDataset, PathDataset
from dhat.extras.datasets.results import LatestResultsDataset

__all__ = ["ConstantDataset", "LatestResultsDataset", "NpzDataset", "PathDataset", "TorchCheckpointDataset"]
