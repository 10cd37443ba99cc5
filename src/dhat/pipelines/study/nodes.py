"""Nodes of the ``study`` pipeline: a seeded training unit per (seed, method), and the aggregation."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from dhat.pipelines.training.nodes import train_method_with
from dhat.study import stack_runs, study_markdown, study_paired_table, study_table

logger = logging.getLogger(__name__)


def train_method_with_seed(seed: int, *inputs: Any) -> tuple[dict[str, Any], dict[str, Any], pd.DataFrame]:
    """:func:`~dhat.pipelines.training.nodes.train_method` (same inputs, after ``seed``) with this replicate's seed."""
    return train_method_with(inputs, seed=seed)


def aggregate_study(**results: Any) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Mean and 95% interval over seeds per method, and paired differences, from every unit's results.

    Keyword names are ``seed<k>__<method>__metrics`` and ``seed<k>__<method>__per_image``
    (the pipeline builds them from its namespaces).
    """
    per_image: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    description = ""
    for key, value in results.items():
        replicate, method, kind = key.split("__")
        seed = int(replicate.removeprefix("seed"))
        if kind == "per_image":
            per_image[(seed, method)] = value
        elif not description:
            description = f"Evaluation: {value['evaluation']['description']}."
    stacked = stack_runs(per_image)
    seeds = sorted({s for s, _ in per_image})
    description = (f"{len(seeds)} training seeds ({', '.join(map(str, seeds))}) per method; every run is scored on "
                   f"the same test images. Each cell: mean accuracy (%) over the seeds with its 95% t-interval. "
                   + description)
    table, paired = study_table(stacked), study_paired_table(stacked)
    logger.info("Study over %d seeds and %d methods", len(seeds), len(stacked))
    return table, paired, study_markdown(table, paired, description)
