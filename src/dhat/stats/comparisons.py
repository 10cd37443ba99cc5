"""Paired method comparisons and DHAT's mask statistics, as report tables (Kedro-free).

Two methods are compared on the same test images: per-image correctness differences
bootstrapped together (one run) or per-seed differences (several seeds), see
:mod:`dhat.intervals`. The pairs come from :data:`dhat.methods.catalog.PAIRED_COMPARISONS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dhat.evaluation.records import positions_of
from dhat.intervals import paired_difference
from dhat.methods.catalog import PAIRED_COMPARISONS, display_name, order_methods

__all__ = ["COMPARED_ATTACKS", "paired_table", "mask_table"]

#: Attacks whose paired differences the report shows (where they were run).
COMPARED_ATTACKS: tuple[str, ...] = ("clean", "pgd50", "autoattack")


def paired_table(
    per_image: Mapping[str, Mapping[str, np.ndarray]],
    pairs: Sequence[tuple[str, str]] = PAIRED_COMPARISONS,
    attacks: Sequence[str] = COMPARED_ATTACKS,
    seed: int = 0,
) -> pd.DataFrame:
    """``a - b`` (points) with a 95% paired interval and its verdict, per pair and attack.

    ``per_image[method]`` holds ``positions`` (test-image indices), one bool array per
    attack and ``<attack>_positions`` for an attack run on a subset; a pair is compared
    only on the same images (otherwise that attack is left out).
    """
    rows: list[dict[str, Any]] = []
    for a, b in pairs:
        if a not in per_image or b not in per_image:
            continue
        first, second = per_image[a], per_image[b]
        for attack in attacks:
            if attack not in first or attack not in second:
                continue
            if not np.array_equal(positions_of(first, attack), positions_of(second, attack)):
                continue
            diff = paired_difference(first[attack], second[attack], display_name(a), display_name(b), seed=seed)
            rows.append({
                "a": a, "b": b, "comparison": f"{display_name(a)} - {display_name(b)}", "attack": attack,
                "difference": diff.interval.estimate, "low": diff.interval.low, "high": diff.interval.high,
                "verdict": diff.verdict, "interval": diff.interval.method,
            })
    return pd.DataFrame(rows, columns=["a", "b", "comparison", "attack", "difference", "low", "high", "verdict",
                                       "interval"])


def mask_table(metrics: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The background each mask-using method trained with: source, rule, coverage, IoU with the truth."""
    with_masks = {m: metrics[m]["masks"] for m in order_methods(list(metrics)) if metrics[m].get("masks")}
    rows = [{
        "method": method, "Method": display_name(method), "source": masks["source"], "rule": masks["rule"],
        "threshold": masks["omega"] if masks["rule"] == "absolute" else masks["background_share"],
        "coverage": 100 * masks["coverage"], "iou_true_background": masks.get("iou_true_background"),
    } for method, masks in with_masks.items()]
    return pd.DataFrame(rows, columns=["method", "Method", "source", "rule", "threshold", "coverage",
                                       "iou_true_background"])
