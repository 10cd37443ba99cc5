"""``evaluate_external``: outside models scored with the project's evaluation protocol."""

from dhat.pipelines.evaluate_external.pipeline import create_pipeline

__all__ = ["create_pipeline"]
