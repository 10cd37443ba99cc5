"""``tune_test``: the tuned configurations and the untuned baselines on fresh seeds, compared paired."""

from dhat.pipelines.tune_test.pipeline import create_pipeline

__all__ = ["create_pipeline"]
