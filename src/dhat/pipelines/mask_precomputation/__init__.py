"""Pipeline `mask_precomputation`."""

from dhat.pipelines.mask_precomputation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
