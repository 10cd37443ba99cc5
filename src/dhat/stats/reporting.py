"""Tables, Markdown and figures from the per-method metrics (Kedro-free).

The report aggregates whatever methods have metrics: a run of one method does
not need the others. Methods appear in the order and under the names of the
method catalog (:mod:`dhat.methods.catalog`).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from dhat.evaluation import registry as attack_registry
from dhat.methods.catalog import display_name, order_methods

__all__ = [
    "markdown_table",
    "robustness_table",
    "last_checkpoint_table",
    "bias_table",
    "markdown_report",
    "learning_curves_figure",
    "gradcam_figure",
]

# Short column names of the background-reliance table in the Markdown report.
BIAS_COLUMNS = {
    "acc_test_aligned": "aligned bg",
    "acc_test": "random bg",
    "aligned_minus_random": "gap",
    "acc_test_foreground_only": "digit only",
    "acc_test_background_only": "bg only",
    "cam_iou_test": "CAM IoU",
    "cam_fg_mass_test": "CAM mass on digit",
}


def _gap_value(metrics: Mapping[str, Any]) -> tuple[float | None, str]:
    """The robust gap under AutoAttack when measured, else under the first attack that was."""
    gap = metrics.get("robust_gap") or {}
    measured = [a for a, v in gap.items() if isinstance(v, Mapping) and v.get("gap") is not None]
    for attack in sorted(measured, key=lambda a: a != "autoattack"):
        return float(gap[attack]["gap"]), attack
    return None, ""


def _attack_columns(metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Table-1 columns, with the PGD lengths that were actually run (PGD-10/20/50 by default)."""
    pgd = attack_registry.of_family({k for m in metrics.values() for k in m.get("best", {})}, "pgd")
    names = [attack_registry.CLEAN, *(pgd or ["pgd10", "pgd20", "pgd50"]), "cw", "autoattack"]
    return {name: attack_registry.header(name) for name in names}


def robustness_table(metrics: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Paper table-1 form for the selected checkpoints: accuracy (%) per attack and robust gap."""
    rows = []
    for method in order_methods(list(metrics)):
        result = metrics[method]
        best = result.get("best", {})
        row: dict[str, Any] = {"method": method, "Method": display_name(method)}
        intervals = result.get("intervals", {})
        for key, header in _attack_columns(metrics).items():
            row[header] = best.get(key)
            row[f"{header} low"] = intervals.get(key, {}).get("low")
            row[f"{header} high"] = intervals.get(key, {}).get("high")
        row["Robust Gap"], row["gap_attack"] = _gap_value(result)
        row["Bg Shift"] = (result.get("background_shift") or {}).get(row["gap_attack"], {}).get("shift")
        evaluation = result.get("evaluation", {})
        row["n_eval"] = evaluation.get("n_eval")
        row["n_test"] = evaluation.get("n_test")
        row["AA version"] = evaluation.get("autoattack_label", "")
        row["best_epoch"] = result.get("checkpoint", {}).get("best_epoch")
        row["epochs"] = result.get("checkpoint", {}).get("epochs")
        row["sanity"] = "ok" if all(c.get("passed", False) for c in result.get("sanity_checks", [])) else "FAILED"
        checkpoint = result.get("checkpoint", {})
        notes = []
        if checkpoint.get("weights") not in (None, "trained model"):
            notes.append(f"evaluated: {checkpoint['weights']}")
        if checkpoint.get("diverged_epoch"):
            notes.append(f"diverged in epoch {checkpoint['diverged_epoch']}")
        row["notes"] = "; ".join(notes)
        rows.append(row)
    return pd.DataFrame(rows)


def last_checkpoint_table(metrics: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The last epoch's checkpoint next to the selected one (robust overfitting shows here)."""
    rows = []
    for method in order_methods(list(metrics)):
        last = metrics[method].get("last") or {}
        best = metrics[method].get("best") or {}
        rows.append(
            {
                "Method": display_name(method),
                "Clean (best)": best.get("clean"),
                "PGD-10 (best)": best.get("pgd10"),
                "Clean (last)": last.get("clean"),
                "PGD-10 (last)": last.get("pgd10"),
                "PGD-50 (last)": last.get("pgd50"),
            }
        )
    return pd.DataFrame(rows)


def bias_table(metrics: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Background-reliance metrics on data with known foregrounds (empty when none was measured)."""
    rows = []
    for method in order_methods(list(metrics)):
        bias = metrics[method].get("bias")
        if not bias:
            continue
        row = {"method": method, "Method": display_name(method)}
        row.update({k: v for k, v in bias.items() if isinstance(v, int | float) or v is None})
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def markdown_table(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    present = [c for c in columns if c in frame.columns]
    lines = ["| " + " | ".join(present) + " |", "|" + "---|" * len(present)]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(_fmt(row[c]) for c in present) + " |")
    return "\n".join(lines)


def _with_intervals(table: pd.DataFrame, headers: Sequence[str]) -> pd.DataFrame:
    """A copy whose accuracy cells read ``59.0 [52.3, 65.6]`` where an interval was measured."""
    shown = table.copy()
    for header in headers:
        if f"{header} low" not in shown:
            continue
        shown[header] = [
            _fmt(v) if lo is None or pd.isna(lo) else f"{v:.1f} [{lo:.1f}, {hi:.1f}]"
            for v, lo, hi in zip(shown[header], shown[f"{header} low"], shown[f"{header} high"], strict=True)
        ]
    return shown


def _paired_lines(paired: pd.DataFrame | None) -> list[str]:
    if paired is None or paired.empty:
        return []
    shown = paired.assign(**{"a - b (points)": [f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]" for d, lo, hi in
                                                zip(paired["difference"], paired["low"], paired["high"], strict=True)]})
    return [
        "## Paired differences (same test images)",
        "",
        "Accuracy of a minus b in points with a 95% interval ("
        + "; ".join(f"{attack}: {method}" for attack, method in
                    paired.drop_duplicates("attack")[["attack", "interval"]].itertuples(index=False))
        + "; the same images resampled for both methods). An interval containing 0 is no detectable difference. "
        "All rows: `data/08_reporting/paired_differences.csv`.",
        "",
        markdown_table(shown, ["comparison", "attack", "a - b (points)", "verdict"]),
        "",
    ]


def _mask_lines(masks: pd.DataFrame | None) -> list[str]:
    if masks is None or masks.empty:
        return []
    return [
        "## DHAT's background masks",
        "",
        "Share of training pixels each configuration marks as background (coverage, %) and the IoU of that "
        "background with the true background. Below 20 % the background image is mostly black and DHAT "
        "degenerates towards UIAT.",
        "",
        markdown_table(masks, ["Method", "source", "rule", "threshold", "coverage", "iou_true_background"]),
        "",
    ]


def markdown_report(
    metrics: Mapping[str, Mapping[str, Any]],
    table: pd.DataFrame,
    bias: pd.DataFrame,
    mask_quality: Mapping[str, Any] | None,
    transfer: pd.DataFrame | None,
    dataset_info: Mapping[str, Any],
    figure_names: Sequence[str] = ("learning_curves.png", "gradcam_attention.png"),
    paired: pd.DataFrame | None = None,
    masks: pd.DataFrame | None = None,
) -> str:
    """The Markdown report: setting, table 1, last checkpoints, bias metrics, sanity checks, transfer."""
    if not metrics:
        return "# DHAT robustness report\n\nNo method has been evaluated yet: run `kedro run --pipelines=train_eval`.\n"
    any_metrics = next(iter(metrics.values()))
    headers = [c for c in table.columns if c in ("Clean", "CW", "AA") or (c.startswith("PGD-") and " " not in c)]
    evaluation = any_metrics.get("evaluation", {})
    lines = [
        "# DHAT robustness report",
        "",
        f"Generated {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} from the latest metrics of each method.",
        "",
        "## Setting",
        "",
        f"- Data: `{dataset_info.get('source')}` ({dataset_info.get('sizes')}), classes: {dataset_info.get('num_classes')}",
        f"- Evaluation: {evaluation.get('description', '')}",
        "- Every number: model in eval mode, fp32, on the test split; checkpoints were selected on the "
        "held-out validation split, never on test data.",
        "",
        "## Robust accuracy (%) of the selected checkpoints (paper table 1 form)",
        "",
        markdown_table(_with_intervals(table, headers), ["Method", *headers, "Robust Gap", "Bg Shift", "best_epoch",
                                                          "sanity", "notes"]),
        "",
    ]
    labels = sorted({str(v) for v in table.get("AA version", []) if v})
    if labels:
        shift = table["Bg Shift"].notna().any() if "Bg Shift" in table else False
        gap = ("Robust gap: accuracy on a fixed training subset minus the same on test images drawn from the training "
               "distribution (robust overfitting alone)")
        gap += ("; Bg Shift: accuracy on those test images minus the same images on decorrelated backgrounds"
                if shift else "")
        lines += [f"Each accuracy with its 95% interval (bootstrap over the test images). AA: {', '.join(labels)}. "
                  f"{gap} (attack: {', '.join(sorted({str(v) for v in table['gap_attack'] if v}))}).", ""]
    lines += _paired_lines(paired) + _mask_lines(masks)
    lines += [
        "## Selected vs last checkpoint",
        "",
        markdown_table(last_checkpoint_table(metrics), ["Method", "Clean (best)", "PGD-10 (best)", "Clean (last)", "PGD-10 (last)", "PGD-50 (last)"]),
        "",
    ]
    if not bias.empty:
        short = bias.rename(columns=BIAS_COLUMNS)
        lines += [
            "## Background reliance (embedded data with true foreground masks)",
            "",
            "Clean accuracy (%) on the same test digits drawn on class-aligned backgrounds (the training shortcut) "
            "and on random backgrounds, their gap, the digit alone and the background alone (labelled with the "
            "class whose style it shows); the IoU of each model's Grad-CAM foreground with the true digit and the "
            "share of Grad-CAM mass on the digit (random-background test images). All columns: "
            "`data/08_reporting/background_bias.csv`.",
            "",
            markdown_table(short, ["Method", *BIAS_COLUMNS.values()]),
            "",
        ]
    if mask_quality:
        lines += [
            "## Attention masks used by DHAT",
            "",
            "Grad-CAM of the naturally trained reference model on the training images: "
            + ", ".join(f"{k} = {_fmt(v)}" for k, v in mask_quality.items()),
            "",
        ]
    failed = [
        (method, check)
        for method, result in metrics.items()
        for check in result.get("sanity_checks", [])
        if not check.get("passed", False)
    ]
    lines += ["## Sanity checks (gradient masking)", ""]
    if failed:
        lines += [f"- **{display_name(m)}: {c.get('name')} failed** ({c.get('detail', '')})" for m, c in failed]
    else:
        lines.append("All sanity checks passed for every method (PGD >= FGSM success, accuracy -> 0 as eps grows, "
                     "white-box <= black-box).")
    lines.append("")
    if transfer is not None and not transfer.empty:
        # Clean accuracy has no source model: one row for every target.
        transfer = transfer.assign(source=transfer["source"].where(transfer["attack"] != "clean", "(none)"))
        pivot = transfer.pivot_table(index=["source", "attack"], columns="target", values="accuracy").reset_index()
        pivot.columns = [str(c) for c in pivot.columns]
        lines += ["## Transfer attacks (accuracy % of the target model)", "", markdown_table(pivot, list(pivot.columns)), ""]
    lines += ["## Figures", ""] + [f"![{name}]({name})" for name in figure_names] + [""]
    return "\n".join(lines)


def learning_curves_figure(histories: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """Training loss, validation clean and validation PGD accuracy per epoch, one line per method."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for method in order_methods(list(histories)):
        history = histories[method]
        label = display_name(method)
        axes[0].plot(history["epoch"], history["loss"], label=label)
        axes[1].plot(history["epoch"], history["val_clean"], label=label)
        if "val_pgd10" in history and history["val_pgd10"].notna().any():
            axes[2].plot(history["epoch"], history["val_pgd10"], label=label)
    for ax, title in zip(axes, ("training loss", "validation clean accuracy (%)", "validation PGD accuracy (%)"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    return fig


def gradcam_figure(
    images: np.ndarray,
    true_masks: np.ndarray | None,
    attention: Mapping[str, np.ndarray],
    threshold: float,
) -> plt.Figure:
    """Grid: each row one test image; columns the image, its true foreground, and each method's Grad-CAM.

    The Grad-CAM panels show the map over the image with the foreground (map >= threshold)
    outlined, so attention on the background is visible at a glance.
    """
    methods = order_methods(list(attention))
    n_rows = images.shape[0]
    n_cols = 1 + (true_masks is not None) + len(methods)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.8 * n_cols, 1.8 * n_rows), squeeze=False)
    for r in range(n_rows):
        col = 0
        axes[r, col].imshow(images[r])
        axes[r, col].set_title("image" if r == 0 else "", fontsize=8)
        col += 1
        if true_masks is not None:
            axes[r, col].imshow(true_masks[r], cmap="gray", vmin=0, vmax=255)
            axes[r, col].set_title("true foreground" if r == 0 else "", fontsize=8)
            col += 1
        for method in methods:
            cam = np.asarray(attention[method][r], dtype=np.float32)
            axes[r, col].imshow(images[r])
            axes[r, col].imshow(cam, cmap="jet", alpha=0.5, vmin=0, vmax=1)
            axes[r, col].contour(cam >= threshold, levels=[0.5], colors="white", linewidths=0.6)
            axes[r, col].set_title(display_name(method) if r == 0 else "", fontsize=8)
            col += 1
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def paired_differences_figure(paired: pd.DataFrame) -> plt.Figure:
    """Each paired difference ``a - b`` of a study table (:func:`dhat.stats.study.study_paired_table`) with its
    95% interval, against zero: a difference is a finding only where its interval leaves zero out."""
    fig, ax = plt.subplots(figsize=(6.5, 0.8 + 0.32 * max(len(paired), 1)))
    if paired.empty:
        ax.text(0.5, 0.5, "no paired differences: run kedro run --pipelines=study", ha="center", va="center")
        ax.set_axis_off()
        return fig
    y = np.arange(len(paired))
    estimate = paired["difference"].to_numpy(float)
    errors = np.vstack([estimate - paired["low"].to_numpy(float), paired["high"].to_numpy(float) - estimate])
    finding = (paired["low"] > 0) | (paired["high"] < 0)
    ax.errorbar(estimate, y, xerr=errors, fmt="none", ecolor="grey", capsize=3)
    ax.scatter(estimate, y, c=np.where(finding, "tab:red", "tab:blue"), zorder=3)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(y, [f"{c}, {a}" for c, a in zip(paired["comparison"], paired["attack"], strict=True)], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("a - b, accuracy points (95% interval; red: excludes 0)")
    fig.tight_layout()
    return fig
