"""Pipeline `transfer`."""

from dhat.pipelines.transfer.pipeline import create_pipeline

__all__ = ["create_pipeline"]
