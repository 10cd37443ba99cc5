"""Pipeline `analysis`."""

from dhat.pipelines.analysis.pipeline import create_figures_pipeline, create_pipeline

__all__ = ["create_figures_pipeline", "create_pipeline"]
