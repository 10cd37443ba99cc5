"""Pipeline `sensitivity`."""

from dhat.pipelines.sensitivity.pipeline import create_pipeline

__all__ = ["create_pipeline"]
