"""Markdown sections of the report for the analyses: attention shift, robustness against the radius,
compute cost, sensitivity and mask sources. Each returns ``[]`` when its table is missing or empty."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pandas as pd

from dhat.evaluation.registry import display_name as attack_display
from dhat.methods.catalog import display_name, order_methods
from dhat.stats.reporting import markdown_table

__all__ = ["attention_shift_lines", "robustness_vs_eps_lines", "compute_cost_lines", "sensitivity_lines",
           "mask_source_lines"]


def _cell(estimate: float, low: float, high: float, digits: int) -> str:
    return f"{estimate:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _difference(estimate: float, low: float, high: float) -> str:
    """``+1.2 [-0.4, +2.9]`` points, or ``-`` where nothing was compared."""
    return "-" if pd.isna(estimate) else f"{estimate:+.1f} [{low:+.1f}, {high:+.1f}]"


def _radius(value: float) -> str:
    return "clean" if value == 0 else f"{value:+g}/255"


def _by_radius(rows: pd.DataFrame, value: str, column: Callable[[float], str], digits: int) -> pd.DataFrame:
    """One row per method (display name, catalog order), one column per radius: ``value [low, high]``."""
    radii = sorted(set(rows["radius_255"]))
    shown = []
    for method in order_methods(list(dict.fromkeys(rows["method"]))):
        mine = rows[rows["method"] == method].set_index("radius_255")
        shown.append({"Method": display_name(method),
                      **{column(r): _cell(mine.at[r, value], mine.at[r, "low"], mine.at[r, "high"], digits)
                         for r in radii if r in mine.index}})
    return pd.DataFrame(shown, columns=["Method", *[column(r) for r in radii]])


def attention_shift_lines(table: pd.DataFrame | None) -> list[str]:
    """IoU of the attention region with the true digit (or the clean attention region) per signed radius."""
    if table is None or table.empty:
        return []
    quantity = "iou_true_foreground" if "iou_true_foreground" in set(table["quantity"]) else "iou_clean_attention"
    what = "the true digit" if quantity == "iou_true_foreground" else "the clean image's attention region"
    rows = table[table["quantity"] == quantity]
    shown = _by_radius(rows, "estimate", _radius, 2)
    n = int(rows["n_images"].iloc[0])
    return [
        "## Attention under inverse and adversarial perturbations (paper figures 1b, 7)",
        "",
        f"IoU of each model's Grad-CAM attention region with {what}, on inverse adversarial examples "
        f"(negative radius: PGD towards the true class) and adversarial examples (positive radius), "
        f"{n} test images (fixed class-stratified subset), 95% bootstrap intervals. The paper's diagnosis: "
        "UIAT's attention leaves the object as the inverse radius grows. Every reference region and the "
        "accuracy on these examples: `data/08_reporting/attention_shift.csv`.",
        "",
        markdown_table(shown, list(shown.columns)),
        "",
        "![attention_shift.png](attention_shift.png)",
        "",
    ]


def robustness_vs_eps_lines(table: pd.DataFrame | None, attack: str = "pgd20") -> list[str]:
    """Accuracy under ``attack`` (or the strongest one present) at every radius, per method."""
    if table is None or table.empty:
        return []
    present = [a for a in dict.fromkeys(table["attack"]) if a != "clean"]
    shown_attack = attack if attack in present else present[-1]
    rows = table[table["attack"] == shown_attack]
    shown = _by_radius(rows, "accuracy", lambda r: f"{r:g}/255", 1)
    n = int(rows["n_images"].iloc[0])
    return [
        "## Robustness against the attack radius (paper figures 3, 8)",
        "",
        f"Accuracy (%) under {attack_display(shown_attack)} (step = radius / 4) on {n} test images, 95% bootstrap "
        f"intervals; FGSM, PGD-10, PGD-20 and CW at every radius: `data/08_reporting/robustness_vs_eps.csv`.",
        "",
        markdown_table(shown, list(shown.columns)),
        "",
        "![robustness_vs_eps.png](robustness_vs_eps.png)",
        "",
    ]


def compute_cost_lines(table: pd.DataFrame | None) -> list[str]:
    """Seconds per training epoch and the ratio to PGD-AT (paper table 3)."""
    if table is None or table.empty:
        return []
    shown = table.assign(Method=[display_name(m) for m in table["method"]],
                         **{"s / epoch": [f"{s:.2f}" for s in table["seconds_per_epoch"]],
                            "x PGD-AT": ["-" if pd.isna(r) else f"{r:.2f}" for r in table["ratio_to_pgd_at"]]})
    return [
        "## Training cost (paper table 3)",
        "",
        "Mean seconds per training epoch (optimisation only, validation excluded) from this run's histories, "
        "on the device named in each row; ratios only between runs on the same device. Timings share the "
        "machine with whatever else ran, so treat small differences between ratios with care; `dhat-benchmark` "
        "measures time per step in isolation.",
        "",
        markdown_table(shown, ["Method", "epochs", "s / epoch", "x PGD-AT", "device"]),
        "",
    ]


def sensitivity_lines(tables: Mapping[str, pd.DataFrame]) -> list[str]:
    """One table per varied parameter: clean and robust accuracy at each value (``kedro run --pipelines=sensitivity``)."""
    table = tables.get("sensitivity")
    if table is None or table.empty:
        return []
    lines = ["## Sensitivity of DHAT (paper figures 4, 5)", "",
             "DHAT trained once per parameter value (the others at their defaults, the same seed); accuracy (%) "
             "with 95% bootstrap intervals over the test images, and the paired difference (points) to the run at "
             "the default value on the same images. These intervals cover the images, not training noise: the "
             "paired difference of two DHAT configurations has a standard deviation of about 5 points over "
             "seeds (study_ablations), so smaller differences are not findings. Figures: `data/08_reporting/sensitivity/`.", ""]
    for parameter in dict.fromkeys(table["parameter"]):
        rows = table[table["parameter"] == parameter]
        attacks = list(dict.fromkeys(rows["attack"]))
        shown = []
        for value in sorted(set(rows["value"])):
            at = rows[rows["value"] == value].set_index("attack")
            cells = {attack_display(a): _cell(at.at[a, "accuracy"], at.at[a, "low"], at.at[a, "high"], 1)
                     for a in attacks}
            if "difference" in at.columns:
                cells |= {f"{attack_display(a)} vs default": _difference(at.at[a, "difference"],
                                                                                at.at[a, "difference_low"],
                                                                                at.at[a, "difference_high"])
                          for a in attacks}
            shown.append({parameter: f"{value:g}", **cells})
        columns = list(shown[0]) if shown else [parameter]
        lines += [f"**{parameter}**", "", markdown_table(pd.DataFrame(shown), columns), "",
                  f"![sensitivity_{parameter}.png](sensitivity/sensitivity_{parameter}.png)", ""]
    return lines


def mask_source_lines(tables: Mapping[str, pd.DataFrame]) -> list[str]:
    """DHAT trained with each attention source (paper table 8; ``kedro run --pipelines=mask_sources``)."""
    table = tables.get("mask_sources")
    if table is None or table.empty:
        return []
    attacks = [c.removesuffix(" low") for c in table.columns if c.endswith(" low") and " - " not in c]
    shown = pd.DataFrame({"source": table["source"]})
    for column in ("coverage", "iou_true_background"):
        shown[column] = ["-" if pd.isna(v) else f"{v:.2f}" for v in table[column]]
    shown["map seconds"] = [f"{s:.1f}" for s in table["map_seconds"]]
    for attack in attacks:
        shown[attack_display(attack)] = [
            _cell(v, lo, hi, 1) for v, lo, hi in zip(table[attack], table[f"{attack} low"], table[f"{attack} high"],
                                                     strict=True)]
    differences = [c for c in table.columns if " - " in c and not c.endswith((" low", " high"))]
    for column in differences:
        attack, reference = column.split(" - ")
        shown[f"{attack_display(attack)} - {reference}"] = [
            _difference(d, lo, hi) for d, lo, hi in zip(table[column], table[f"{column} low"], table[f"{column} high"],
                                                        strict=True)]
    return [
        "## DHAT with each mask source (paper table 8)",
        "",
        "Each source's maps of the training images, cut by DHAT's mask rule: coverage (share of pixels marked "
        "background), IoU with the true background, time to compute the maps; then DHAT trained with them "
        "(one seed) and its accuracy (%) with 95% bootstrap intervals, and its paired difference (points) to "
        "Grad-CAM on the same test images (the interval covers the images, not training noise). "
        "`data/08_reporting/mask_sources/`.",
        "",
        markdown_table(shown, list(shown.columns)),
        "",
    ]
