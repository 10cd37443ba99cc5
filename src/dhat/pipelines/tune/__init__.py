"""``tune``: equal-budget tuning of every method on validation data (Optuna), per protocol."""

from dhat.pipelines.tune.pipeline import create_pipeline

__all__ = ["create_pipeline"]
