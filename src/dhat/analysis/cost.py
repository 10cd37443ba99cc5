"""Training cost per method from the training histories (paper table 3).

Seconds per epoch count the optimisation only (the history's ``epoch_seconds``; the
per-epoch validation is ``eval_seconds`` and is left out), on the device that trained.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

__all__ = ["REFERENCE", "compute_cost_table"]

#: The method every cost is divided by (the paper's table 3 reports ratios to PGD-AT).
REFERENCE = "pgd_at"


def compute_cost_table(histories: Mapping[str, pd.DataFrame], devices: Mapping[str, str]) -> pd.DataFrame:
    """One row per method: ``epochs``, ``seconds_per_epoch`` (mean), ``train_seconds`` (sum),
    ``ratio_to_pgd_at`` (``None`` without a PGD-AT history or on another device) and ``device``.

    Args:
        histories: ``{method: history}`` with an ``epoch_seconds`` column per epoch.
        devices: ``{method: device label}`` (``"unknown"`` where missing).
    """
    rows = []
    for method, history in histories.items():
        if "epoch_seconds" not in history.columns or history.empty:
            raise ValueError(f"the training history of {method} has no epoch_seconds column; re-run its training")
        seconds = history["epoch_seconds"].astype(float)
        rows.append({"method": method, "epochs": len(seconds), "seconds_per_epoch": float(seconds.mean()),
                     "train_seconds": float(seconds.sum()), "device": devices.get(method, "unknown")})
    table = pd.DataFrame(rows, columns=["method", "epochs", "seconds_per_epoch", "train_seconds", "device"])
    reference = table.loc[table["method"] == REFERENCE, "seconds_per_epoch"]
    base = float(reference.iloc[0]) if len(reference) else None
    base_device = devices.get(REFERENCE, "unknown")
    # A ratio between two devices would measure the devices, not the methods.
    table.insert(4, "ratio_to_pgd_at", [
        s / base if base is not None and device == base_device else None
        for s, device in zip(table["seconds_per_epoch"], table["device"], strict=True)
    ])
    return table
