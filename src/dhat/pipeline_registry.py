"""Project pipelines, registered explicitly and statically.

The composites are built from each stage's ``create_pipeline`` rather than by
indexing ``find_pipelines()``, which breaks ``--pipelines X`` on Kedro >= 1.5.
Which methods a composite trains comes from the groups of the method catalog
(:mod:`dhat.methods.catalog`); ``--namespaces=a,b`` narrows any of them to those methods.
"""

from __future__ import annotations

from kedro.pipeline import Pipeline

from dhat.methods.catalog import GROUPS, namespaces
from dhat.pipelines import (
    analysis,
    data_ingestion,
    evaluation,
    mask_precomputation,
    mask_sources,
    reporting,
    sensitivity,
    study,
    training,
    transfer,
)

#: Composite pipeline -> the catalog groups whose methods it trains and evaluates.
COMPOSITES: dict[str, tuple[str, ...]] = {
    "train_eval": ("core", "oracle"),  # the paper's core comparison and DHAT's oracle; the CPU default
    "train_eval_paper": ("core", "baselines"),  # every method of the paper's tables 1 and 2
    "train_eval_baselines": ("baselines",),
    "train_eval_ablations": ("ablations", "mask_variants", "floe_variants"),
    "train_eval_all": GROUPS,
}


def train_eval(methods: tuple[str, ...]) -> Pipeline:
    """Data -> masks -> training, evaluation and analyses of ``methods`` -> transfer attacks -> report."""
    done = [f"{m}.metrics" for m in methods]
    analysed = [f"{m}.{kind}" for m in methods for kind in ("attention_shift", "robustness_vs_eps")]
    return (
        data_ingestion.create_pipeline()
        + mask_precomputation.create_pipeline()
        + training.create_pipeline(methods=methods)
        + evaluation.create_pipeline(methods=methods)
        + analysis.create_pipeline(methods=methods)
        + transfer.create_pipeline(after=done)
        + reporting.create_pipeline(after=done + analysed + ["transfer_table"])
    )


def register_pipelines() -> dict[str, Pipeline]:
    """Map pipeline names to pipelines (``kedro run --pipelines=<name>``)."""
    composites = {name: train_eval(namespaces(groups)) for name, groups in COMPOSITES.items()}
    return {
        "data_ingestion": data_ingestion.create_pipeline(),
        "mask_precomputation": mask_precomputation.create_pipeline(),
        "training": training.create_pipeline(),
        "evaluation": evaluation.create_pipeline(),
        "analysis": analysis.create_pipeline() + analysis.create_figures_pipeline(),
        "transfer": transfer.create_pipeline(),
        "reporting": reporting.create_pipeline(),
        **composites,
        "study": study.create_pipeline(),
        "study_ablations": study.create_ablation_pipeline(),
        "sensitivity": sensitivity.create_pipeline(),
        "mask_sources": mask_sources.create_pipeline(),
        "__default__": composites["train_eval"],
    }
