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
from dhat.pipelines.methods import ABLATION_METHODS, ALL_METHODS, BASELINE_METHODS, DEFAULT_METHODS


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


DEFAULT_TRAIN_EVAL_METHODS: tuple[str, ...] = DEFAULT_METHODS
_train_eval_methods: tuple[str, ...] = DEFAULT_METHODS


def set_train_eval_methods(methods: tuple[str, ...]) -> None:
    """Choose the method namespaces of ``train_eval`` (set by :class:`dhat.session.DhatSession` per run)."""
    global _train_eval_methods  # noqa: PLW0603 - one selection per process run, read by register_pipelines
    _train_eval_methods = tuple(dict.fromkeys(methods))


def train_eval_methods() -> tuple[str, ...]:
    """The method namespaces ``train_eval`` is currently built with."""
    return _train_eval_methods


def register_pipelines() -> dict[str, Pipeline]:
    """Map pipeline names to pipelines (``kedro run --pipelines=<name>``)."""
    train_eval = _train_eval(_train_eval_methods)
    return {
        "data_ingestion": data_ingestion.create_pipeline(),
        "mask_precomputation": mask_precomputation.create_pipeline(),
        "training": training.create_pipeline(methods=ALL_METHODS),
        "evaluation": evaluation.create_pipeline(methods=ALL_METHODS),
        "transfer": transfer.create_pipeline(),
        "reporting": reporting.create_pipeline(),
        "train_eval": train_eval,
        "train_eval_baselines": _train_eval(BASELINE_METHODS),
        "train_eval_ablations": _train_eval(ABLATION_METHODS),
        "train_eval_all": _train_eval(ALL_METHODS),
        "__default__": train_eval,
    }
