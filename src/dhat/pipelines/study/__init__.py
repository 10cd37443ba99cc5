"""``study``: every method of the core comparison with several seeds, aggregated with intervals."""

from dhat.pipelines.study.pipeline import create_ablation_pipeline, create_pipeline

__all__ = ["create_ablation_pipeline", "create_pipeline"]
