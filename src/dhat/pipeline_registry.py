"""Project pipelines, registered explicitly.

The composites are built from each stage's ``create_pipeline`` rather than by
indexing ``find_pipelines()``, which breaks ``--pipelines X`` on Kedro >= 1.5.
"""

from __future__ import annotations

from kedro.pipeline import Pipeline

from dhat.pipelines import (
    data_ingestion,
    evaluation,
    mask_precomputation,
    reporting,
    training,
    transfer,
)
from dhat.pipelines.methods import ABLATION_METHODS, ALL_METHODS, DEFAULT_METHODS


def _train_eval(methods: tuple[str, ...]) -> Pipeline:
    """Data -> masks -> training and evaluation of ``methods`` -> transfer attacks -> report."""
    done = [f"{m}.metrics" for m in methods]
    return (
        data_ingestion.create_pipeline()
        + mask_precomputation.create_pipeline()
        + training.create_pipeline(methods=methods)
        + evaluation.create_pipeline(methods=methods)
        + transfer.create_pipeline(after=done)
        + reporting.create_pipeline(after=done + ["transfer_table"])
    )


def register_pipelines() -> dict[str, Pipeline]:
    """Map pipeline names to pipelines (``kedro run --pipelines=<name>``)."""
    train_eval = _train_eval(DEFAULT_METHODS)
    return {
        "data_ingestion": data_ingestion.create_pipeline(),
        "mask_precomputation": mask_precomputation.create_pipeline(),
        "training": training.create_pipeline(methods=ALL_METHODS),
        "evaluation": evaluation.create_pipeline(methods=ALL_METHODS),
        "transfer": transfer.create_pipeline(),
        "reporting": reporting.create_pipeline(),
        "train_eval": train_eval,
        "train_eval_ablations": _train_eval(ABLATION_METHODS),
        "train_eval_all": _train_eval(ALL_METHODS),
        "__default__": train_eval,
    }
