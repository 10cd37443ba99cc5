"""Project-local Kedro datasets.

Catalog ``type:`` strings: ``dhat.kedro_datasets.NpzDataset``,
``dhat.kedro_datasets.TorchCheckpointDataset`` and
``dhat.kedro_datasets.LatestResultsDataset``.
"""

from dhat.kedro_datasets.arrays import NpzDataset
from dhat.kedro_datasets.checkpoint import TorchCheckpointDataset
from dhat.kedro_datasets.results import LatestResultsDataset

__all__ = ["LatestResultsDataset", "NpzDataset", "TorchCheckpointDataset"]
