"""``build_report`` on metrics of any subset of methods."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dhat.pipelines.reporting.nodes import build_report


def _metrics(clean: float) -> dict:
    return {
        "best": {"clean": clean, "pgd10": clean / 2, "pgd20": clean / 2, "pgd50": clean / 2, "cw": 1.0, "autoattack": 0.5},
        "evaluation": {"n_eval": 4, "n_test": 4, "description": "all 4 test images", "autoattack_label": "AA"},
        "robust_gap": {"pgd10": {"train": 50.0, "test": 40.0, "gap": 10.0}, "n_images": 4},
        "sanity_checks": [{"name": "pgd_beats_fgsm", "passed": True}],
        "checkpoint": {"best_epoch": 1, "epochs": 2},
    }


def test_report_orders_names_and_draws_any_subset_of_methods():
    rng = np.random.default_rng(0)
    test_set = {"images": rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8), "labels": np.arange(4),
                "masks": np.zeros((4, 8, 8), np.uint8)}
    metrics = {"dhat": _metrics(40.0), "natural": _metrics(90.0), "my_method": _metrics(10.0)}
    examples = {m: {"indices": np.array([0, 2]), "maps": rng.random((2, 8, 8)).astype(np.float32)} for m in metrics}
    history = pd.DataFrame({"epoch": [1, 2], "loss": [2.0, 1.0], "val_clean": [50.0, 60.0], "val_pgd10": [20.0, 30.0]})
    per_image = {m: {"positions": np.arange(4), "clean": np.array([1, 1, 0, 0], bool)} for m in metrics}
    per_image["natural"]["clean"] = np.array([1, 1, 1, 1], bool)
    table, bias, paired, markdown, curves, figure = build_report(
        metrics, examples, per_image, dict.fromkeys(metrics, history), {}, {}, test_set, {"source": "embedded"},
        {"cam_threshold": 0.1}, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), {}, {},
    )
    # Catalog order and display names; a namespace unknown to the catalog goes last, under its own name.
    assert table["method"].tolist() == ["natural", "dhat", "my_method"]
    assert table["Method"].tolist() == ["Natural", "DHAT", "my_method"]
    assert table["Clean"].tolist() == [90.0, 40.0, 10.0] and table["Robust Gap"].tolist() == [10.0, 10.0, 10.0]
    assert bias.empty
    assert "| Natural | 90.00 |" in markdown
    # One row per example image, columns: image, true mask, one Grad-CAM per method.
    assert np.array(figure.axes).size == 2 * (2 + 3)
    assert len(curves.axes[0].lines) == 3


def test_the_paired_differences_figure_marks_only_intervals_that_leave_zero_out():
    from matplotlib.collections import PathCollection
    from matplotlib.colors import to_rgba

    from dhat.stats.reporting import paired_differences_figure

    paired = pd.DataFrame({"comparison": ["DHAT - UIAT", "DHAT - PGD-AT", "DHAT - PGD-AT"],
                           "attack": ["clean", "clean", "pgd50"], "difference": [2.0, 0.5, -3.0],
                           "low": [1.0, -0.5, -4.0], "high": [3.0, 1.5, -2.0]})
    ax = paired_differences_figure(paired).axes[0]
    points = next(c for c in ax.collections if isinstance(c, PathCollection))
    assert [tuple(c) for c in points.get_facecolors()] == [to_rgba("tab:red"), to_rgba("tab:blue"), to_rgba("tab:red")]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["DHAT - UIAT, clean", "DHAT - PGD-AT, clean",
                                                             "DHAT - PGD-AT, pgd50"]
    assert paired_differences_figure(paired.iloc[:0]).axes[0].texts  # an empty table says what to run
