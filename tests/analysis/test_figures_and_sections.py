"""The analysis figures are readable (axes, units, legend) and the report sections show the tables' numbers."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from dhat.analysis import sections
from dhat.analysis.figures import attention_shift_figure, robustness_vs_eps_figure, sensitivity_figure


def _attention_table() -> pd.DataFrame:
    rows = []
    for method, drift in (("uiat", 0.1), ("dhat", 0.0)):
        for radius in (-8.0, 0.0, 8.0):
            for quantity, base in (("iou_true_foreground", 0.5), ("iou_true_background", 0.2), ("accuracy", 70.0)):
                value = base - drift * (radius < 0)
                rows.append({"method": method, "radius": radius / 255, "radius_255": radius, "quantity": quantity,
                             "estimate": value, "low": value - 0.05, "high": value + 0.05, "n_images": 200})
    return pd.DataFrame(rows)


def _radius_table() -> pd.DataFrame:
    rows = [{"method": "pgd_at", "radius": 0.0, "radius_255": 0.0, "attack": "clean", "accuracy": 80.0, "low": 76.0,
             "high": 84.0, "n_images": 450}]
    for radius, accuracy in ((4.0, 60.0), (8.0, 40.0)):
        for attack in ("fgsm", "pgd20"):
            rows.append({"method": "pgd_at", "radius": radius / 255, "radius_255": radius, "attack": attack,
                         "accuracy": accuracy, "low": accuracy - 4, "high": accuracy + 4, "n_images": 450})
    return pd.DataFrame(rows)


def _labels(fig: plt.Figure) -> list[tuple[str, str, str]]:
    return [(ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) for ax in fig.axes]


def test_attention_shift_figure_has_a_panel_per_reference_with_units_and_legend():
    fig = attention_shift_figure(_attention_table(), 0.4)
    labels = _labels(fig)
    assert len(labels) == 3  # true foreground, true background, accuracy
    assert all("radius (/255)" in x for x, _, _ in labels)
    assert [y for _, y, _ in labels] == ["IoU", "IoU", "accuracy (%)"]
    assert "true object" in labels[0][2]
    assert [t.get_text() for t in fig.axes[-1].get_legend().get_texts()] == ["UIAT", "DHAT"]
    assert "40% most attended" in fig._suptitle.get_text()
    plt.close(fig)


def test_robustness_vs_eps_figure_draws_each_attack_from_the_clean_point():
    fig = robustness_vs_eps_figure(_radius_table())
    assert [ax.get_title() for ax in fig.axes] == ["FGSM", "PGD-20"]
    assert fig.axes[0].get_xlabel() == "L-inf radius (/255)" and fig.axes[0].get_ylabel() == "accuracy (%)"
    x, y = fig.axes[1].lines[0].get_data()
    assert list(x) == [0.0, 4.0, 8.0] and list(y) == [80.0, 60.0, 40.0]
    plt.close(fig)


def test_sensitivity_figure_marks_the_default():
    table = pd.DataFrame([{"parameter": "lambda1", "value": v, "attack": a, "accuracy": acc, "low": acc - 3,
                           "high": acc + 3, "n_images": 450}
                          for v, acc in ((0.5, 60.0), (1.0, 65.0)) for a in ("clean", "pgd20")])
    fig = sensitivity_figure(table, "lambda1", ["pgd20"], default=1.0)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "lambda1" and ax.get_ylabel() == "accuracy (%)"
    assert ax.get_title() == "DHAT: sensitivity to lambda1 (one seed)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["default", "clean", "PGD-20"]
    plt.close(fig)


def test_sections_show_intervals_and_name_their_files():
    attention = "\n".join(sections.attention_shift_lines(_attention_table()))
    assert "| UIAT | 0.40 [0.35, 0.45] | 0.50 [0.45, 0.55] | 0.50 [0.45, 0.55] |" in attention
    assert "attention_shift.csv" in attention and "200 test images" in attention
    radius = "\n".join(sections.robustness_vs_eps_lines(_radius_table()))
    assert "under PGD-20" in radius and "| PGD-AT | 60.0 [56.0, 64.0] | 40.0 [36.0, 44.0] |" in radius
    cost = pd.DataFrame({"method": ["pgd_at", "dhat"], "epochs": [2, 2], "seconds_per_epoch": [1.0, 2.5],
                         "train_seconds": [2.0, 5.0], "ratio_to_pgd_at": [1.0, 2.5], "device": ["cpu", "cpu"]})
    assert "| DHAT | 2 | 2.50 | 2.50 | cpu |" in "\n".join(sections.compute_cost_lines(cost))
    for empty in (sections.attention_shift_lines(None), sections.robustness_vs_eps_lines(pd.DataFrame()),
                  sections.compute_cost_lines(None), sections.sensitivity_lines({}), sections.mask_source_lines({})):
        assert empty == []
