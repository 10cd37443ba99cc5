"""Nodes of the ``tune_test`` pipeline: the chosen configurations trained on fresh seeds, then aggregated."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from dhat.pipelines.training.nodes import train_method
from dhat.stats.study import collect_runs, stack_runs, study_markdown, study_paired_table, study_table
from dhat.tuning import TuneSettings

logger = logging.getLogger(__name__)


def train_chosen_with_seed(seed: int, chosen: dict[str, Any], train_set: dict[str, np.ndarray],
                           val_set: dict[str, np.ndarray], attention_masks: dict[str, np.ndarray],
                           dataset_info: dict[str, Any], model: dict[str, Any], training: dict[str, Any], device: str,
                           training_state: str) -> tuple[dict[str, Any], dict[str, Any], pd.DataFrame]:
    """The chosen configuration (``tune_<protocol>.<method>.chosen``) trained with a fresh seed, as the study trains.

    Checkpoint selection uses the usual validation split, whatever protocol chose the configuration.
    """
    logger.info("Fresh seed %d: %s/%s with the values of trial %d", seed, chosen["protocol"], chosen["method"],
                chosen["trial"])
    return train_method(train_set, val_set, attention_masks, dataset_info, chosen["section"], model,
                        {**training, "seed": seed}, device, training_state)


def aggregate_fresh(protocol: str, tune: dict[str, Any], **results: Any) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Mean and 95% interval over the fresh seeds per method, and the paired differences of ``tune.comparisons``.

    Keywords ``seed<k>__<method>__metrics`` / ``__per_image``, as the study's aggregation.
    """
    settings = TuneSettings.from_dict(tune)
    per_image, evaluation = collect_runs(results)
    stacked = stack_runs(per_image)
    seeds = sorted({s for s, _ in per_image})
    untuned = ", ".join(settings.baselines) or "none"
    description = (f"The configurations chosen under protocol '{protocol}' and the untuned baselines ({untuned}), "
                   f"each trained with {len(seeds)} fresh seeds ({', '.join(map(str, seeds))}; never a tuning or "
                   "re-scoring seed), scored on the same test images. Each cell: mean accuracy (%) over the seeds with "
                   f"its 95% t-interval. {evaluation}")
    table, paired = study_table(stacked), study_paired_table(stacked, pairs=settings.comparisons)
    markdown = study_markdown(table, paired, description).replace("# Multi-seed study",
                                                                  f"## Tuned comparison, protocol '{protocol}'", 1)
    return table, paired, markdown


def write_tuning_report(**sections: str) -> str:
    """The tuning report: per protocol its chosen configurations, then its test on fresh seeds (keywords in order)."""
    lines = ["# Tuned comparison (equal budgets)", "",
             "Every method tuned with the same number of completed trials on validation data (docs/tuning.md); the "
             "chosen configurations then trained on fresh seeds and scored on the test split. A difference is a "
             "finding only where its interval excludes 0.", ""]
    return "\n".join(lines) + "\n".join(text.rstrip() + "\n" for text in sections.values())
