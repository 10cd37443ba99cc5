"""What the tuning shows: the chosen values, best-so-far curves, the clean / robust trade-off of every trial.

Every function takes the ``check`` records of the ``tune`` pipeline (one per method of a
protocol: the chosen configuration, the trials that counted, the re-scoring and the
validation check of the winner) and returns a table, a figure or Markdown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from dhat.evaluation.registry import of_family
from dhat.methods.catalog import display_name, order_methods

__all__ = ["best_so_far", "chosen_table", "progress_figure", "tradeoff_figure", "tuning_markdown"]

_METRICS = {"val_pgd10": "validation PGD-10 (%)", "val_clean": "validation clean (%)"}


def _ordered(checks: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return order_methods(list(checks))


def _value(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def best_so_far(trials: list[Mapping[str, Any]]) -> pd.DataFrame:
    """Per trial in order: completed trials so far, cumulative wall seconds (failed trials included, interrupted
    ones not: their ``seconds`` is unknown), best value so far among the counted ones."""
    rows, best, done, seconds = [], -math.inf, 0, 0.0
    for trial in trials:
        seconds += float(trial.get("seconds") or 0.0)
        if trial["counted"] and _value(trial["value"]) is not None:
            done += 1
            best = max(best, float(trial["value"]))
            rows.append({"trial": trial["trial"], "completed": done, "wall_seconds": seconds, "best": best})
    return pd.DataFrame(rows, columns=["trial", "completed", "wall_seconds", "best"])


def chosen_table(checks: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per method: budget, chosen trial and values, its single and re-scored validation scores, the
    importances, and the winner's validation check (clean, strongest PGD, AutoAttack, sanity)."""
    rows = []
    for method in _ordered(checks):
        check = checks[method]
        chosen = check["chosen"]
        winner = next(r for r in chosen["rescored"] if r["trial"] == chosen["trial"])
        pgd = of_family(check, "pgd")
        failed = [c["name"] for c in check["sanity_checks"] if not c["passed"]]
        rows.append({
            "protocol": chosen["protocol"], "method": method, "Method": display_name(method),
            "objective": chosen["objective"], "n_trials": chosen["n_trials"],
            "completed_trials": chosen["completed_trials"], "chosen_trial": chosen["trial"],
            "trial_value": winner["value"], "rescored_mean": winner["mean"], "rescore_runs": 1 + len(winner["scores"]),
            "tuning_seconds": sum(float(t.get("seconds") or 0) for t in chosen["trials"]),
            "interrupted_trials": sum(bool(t.get("interrupted")) for t in chosen["trials"]),
            "check_clean": check.get("clean"), "check_pgd": check.get(pgd[-1]) if pgd else None,
            "check_pgd_attack": pgd[-1] if pgd else None, "check_autoattack": check.get("autoattack"),
            "autoattack_label": check.get("autoattack_label"), "sanity_passed": check["passed"],
            "sanity_failed": ", ".join(failed),
            **{f"value:{k}": v for k, v in chosen["values"].items()},
            **{f"importance:{k}": v for k, v in chosen["importances"].items()},
        })
    return pd.DataFrame(rows)


def progress_figure(checks: Mapping[str, Mapping[str, Any]], protocol: str) -> plt.Figure:
    """Best validation score so far against completed trials (left) and against wall time (right), a line per method."""
    fig, (by_trial, by_time) = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    objective = "val_pgd10"
    for method in _ordered(checks):
        chosen = checks[method]["chosen"]
        objective = chosen["objective"]
        curve = best_so_far(chosen["trials"])
        by_trial.step(curve["completed"], curve["best"], where="post", marker="o", markersize=3,
                      label=display_name(method))
        by_time.step(curve["wall_seconds"] / 60, curve["best"], where="post", marker="o", markersize=3,
                     label=display_name(method))
    by_trial.set(xlabel="completed trials", ylabel=f"best {_METRICS.get(objective, objective)} so far")
    cut_off = sum(bool(t.get("interrupted")) for c in checks.values() for t in c["chosen"]["trials"])
    by_time.set(xlabel="wall time of the trials (minutes)" + (f"; {cut_off} interrupted, not counted" if cut_off else ""))
    for ax in (by_trial, by_time):
        ax.grid(alpha=0.3)
    by_trial.legend(fontsize=8)
    fig.suptitle(f"Tuning progress, protocol '{protocol}' (same completed budget per method)")
    fig.tight_layout()
    return fig


def tradeoff_figure(checks: Mapping[str, Mapping[str, Any]], protocol: str) -> plt.Figure:
    """Validation clean against the objective for every counted trial, a panel per method; the chosen one starred."""
    methods = _ordered(checks)
    fig, axes = plt.subplots(1, len(methods), figsize=(3.2 * len(methods), 3.4), sharex=True, sharey=True,
                             squeeze=False)
    for ax, method in zip(axes[0], methods, strict=True):
        chosen = checks[method]["chosen"]
        done = [t for t in chosen["trials"] if t["counted"] and _value(t["value"]) is not None]
        clean = np.array([float(t["val_clean"]) for t in done])
        robust = np.array([float(t["value"]) for t in done])
        ax.scatter(clean, robust, s=14, alpha=0.7, label="trial")
        pick = [t for t in done if t["trial"] == chosen["trial"]]
        if pick:
            ax.scatter([pick[0]["val_clean"]], [pick[0]["value"]], marker="*", s=160, color="tab:red",
                       edgecolor="black", label=f"chosen (trial {chosen['trial']})")
        ax.set(title=display_name(method), xlabel="validation clean (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    objective = checks[methods[0]]["chosen"]["objective"] if methods else "val_pgd10"
    axes[0][0].set_ylabel(_METRICS.get(objective, objective))
    fig.suptitle(f"Clean / robust trade-off of every trial, protocol '{protocol}'")
    fig.tight_layout()
    return fig


def _cell(value: Any, digits: int = 1) -> str:
    value = _value(value)
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2g}"
    return str(value)


def tuning_markdown(table: pd.DataFrame, protocol: str, description: str) -> str:
    """The chosen configurations of one protocol as Markdown (values, scores, checks, importances)."""
    if table.empty:
        return f"### Protocol '{protocol}'\n\nNo method was tuned.\n"
    values = [c for c in table.columns if c.startswith("value:")]
    lines = [f"### Protocol '{protocol}'", "", description, "",
             "| Method | trials (completed) | search (min) | chosen | " + " | ".join(c.removeprefix("value:") for c in values)
             + " | val. objective (trial / re-scored mean) | check: clean / PGD / AA | sanity |",
             "|---" * (6 + len(values)) + "|---|"]
    for _, row in table.iterrows():
        cells = [_cell(row[c], 4) if isinstance(_value(row[c]), float) else _cell(row[c]) for c in values]
        sanity = "passed" if row["sanity_passed"] else f"FAILED: {row['sanity_failed']}"
        cut_off = int(row.get("interrupted_trials") or 0)
        minutes = _cell(float(row["tuning_seconds"]) / 60) + (f" ({cut_off} interrupted, not counted)" if cut_off else "")
        lines.append(f"| {row['Method']} | {row['n_trials']} ({row['completed_trials']}) | {minutes} | "
                     f"{row['chosen_trial']} | "
                     + " | ".join(cells) + f" | {_cell(row['trial_value'])} / {_cell(row['rescored_mean'])} "
                     f"({row['rescore_runs']} runs) | {_cell(row['check_clean'])} / {_cell(row['check_pgd'])} / "
                     f"{_cell(row['check_autoattack'])} | {sanity} |")
    importance = [c for c in table.columns if c.startswith("importance:")]
    if importance:
        lines += ["", "Parameter importances (Optuna's fANOVA over the counted trials):", ""]
        for _, row in table.iterrows():
            parts = [f"{c.removeprefix('importance:')} {float(row[c]):.2f}" for c in importance
                     if _value(row[c]) is not None]
            lines.append(f"- {row['Method']}: {', '.join(parts) or '-'}")
    return "\n".join(lines) + "\n"
