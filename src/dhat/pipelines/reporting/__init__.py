"""Pipeline `reporting`."""

from dhat.pipelines.reporting.pipeline import create_pipeline

__all__ = ["create_pipeline"]
