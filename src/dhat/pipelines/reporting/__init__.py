"""Pipeline `reporting` (stand-alone, over results on disk) and the report of a run (`create_run_pipeline`)."""

from dhat.pipelines.reporting.pipeline import create_pipeline, create_run_pipeline

__all__ = ["create_pipeline", "create_run_pipeline"]
