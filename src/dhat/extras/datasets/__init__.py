"""Project-local Kedro datasets.

Catalog ``type:`` strings: ``dhat.extras.datasets.NpzDataset``,
``dhat.extras.datasets.TorchCheckpointDataset`` and
``dhat.extras.datasets.LatestResultsDataset``.
"""

from dhat.extras.datasets.arrays import NpzDataset
from dhat.extras.datasets.checkpoint import TorchCheckpointDataset
from dhat.extras.datasets.results import LatestResultsDataset

__all__ = ["LatestResultsDataset", "NpzDataset", "TorchCheckpointDataset"]
