"""Project-local Kedro datasets.

Catalog ``type:`` strings: ``dhat.extras.datasets.NpzDataset``,
``dhat.extras.datasets.TorchCheckpointDataset``, ``dhat.extras.datasets.LatestResultsDataset``
and ``dhat.extras.datasets.ConstantDataset``.
"""

from dhat.extras.datasets.arrays import NpzDataset
from dhat.extras.datasets.checkpoint import TorchCheckpointDataset
from dhat.extras.datasets.constant import ConstantDataset
from dhat.extras.datasets.results import LatestResultsDataset

__all__ = ["ConstantDataset", "LatestResultsDataset", "NpzDataset", "TorchCheckpointDataset"]
