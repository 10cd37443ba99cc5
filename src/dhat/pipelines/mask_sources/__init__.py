"""Pipeline `mask_sources`."""

from dhat.pipelines.mask_sources.pipeline import create_pipeline

__all__ = ["create_pipeline"]
