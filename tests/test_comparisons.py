"""Paired comparison and mask tables."""

from __future__ import annotations

import numpy as np
import pytest

from dhat.evaluation.records import attack_names, positions_of
from dhat.intervals import paired_difference
from dhat.stats.comparisons import mask_table, paired_table


def test_pairs_are_compared_on_the_same_images_only():
    positions = np.arange(6)
    per_image = {
        "dhat": {"positions": positions, "clean": np.array([1, 1, 1, 1, 0, 0], bool)},
        "uiat": {"positions": positions, "clean": np.array([1, 1, 0, 0, 0, 0], bool)},
        "pgd_at": {"positions": positions + 1, "clean": np.ones(6, bool)},  # other images: not comparable
    }
    table = paired_table(per_image, pairs=[("dhat", "uiat"), ("dhat", "pgd_at"), ("dhat", "absent")])
    assert table["comparison"].tolist() == ["DHAT - UIAT"] and table["attack"].tolist() == ["clean"]
    row = table.iloc[0]
    expected = paired_difference(per_image["dhat"]["clean"], per_image["uiat"]["clean"], "DHAT", "UIAT")
    assert (row["difference"], row["low"], row["high"]) == pytest.approx(
        (100 * 2 / 6, expected.interval.low, expected.interval.high))
    assert row["verdict"] == expected.verdict


def test_an_attack_run_on_a_subset_is_paired_on_its_own_positions():
    positions = np.arange(4)
    per_image = {
        "dhat": {"positions": positions, "clean": np.array([1, 1, 1, 0], bool),
                 "autoattack": np.array([1, 0], bool), "autoattack_positions": np.array([0, 2])},
        "uiat": {"positions": positions, "clean": np.array([1, 0, 0, 0], bool),
                 "autoattack": np.array([0, 0], bool), "autoattack_positions": np.array([0, 2])},
        "pgd_at": {"positions": positions, "clean": np.ones(4, bool),
                   "autoattack": np.ones(2, bool), "autoattack_positions": np.array([1, 3])},
    }
    assert positions_of(per_image["dhat"], "autoattack").tolist() == [0, 2]
    assert positions_of(per_image["dhat"], "clean").tolist() == [0, 1, 2, 3]
    assert attack_names(per_image["dhat"]) == ["clean", "autoattack"]
    table = paired_table(per_image, pairs=[("dhat", "uiat"), ("dhat", "pgd_at")], attacks=["clean", "autoattack"])
    rows = {(r.comparison, r.attack): r.difference for r in table.itertuples()}
    # DHAT - UIAT: clean 3/4 - 1/4, AutoAttack 1/2 - 0/2; DHAT - PGD-AT under AutoAttack: other images, left out.
    assert rows == {("DHAT - UIAT", "clean"): pytest.approx(50.0), ("DHAT - UIAT", "autoattack"): pytest.approx(50.0),
                    ("DHAT - PGD-AT", "clean"): pytest.approx(-25.0)}


def test_mask_table_reads_the_threshold_of_each_rule():
    metrics = {
        "dhat": {"masks": {"source": "gradcam", "rule": "absolute", "omega": 0.1, "background_share": 0.5,
                           "coverage": 0.066, "iou_true_background": 0.1}},
        "dhat_q": {"masks": {"source": "gradcam", "rule": "quantile", "omega": 0.1, "background_share": 0.6,
                             "coverage": 0.6, "iou_true_background": 0.7}},
        "pgd_at": {"masks": None},
    }
    table = mask_table(metrics)
    assert table["method"].tolist() == ["dhat", "dhat_q"]
    assert table["threshold"].tolist() == [0.1, 0.6] and table["coverage"].tolist() == pytest.approx([6.6, 60.0])
