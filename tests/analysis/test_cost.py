"""Training cost per method and the ratio to PGD-AT, by hand (dhat.analysis.cost)."""

import pandas as pd
import pytest

from dhat.analysis.cost import compute_cost_table


def _history(*seconds: float) -> pd.DataFrame:
    return pd.DataFrame({"epoch": range(1, len(seconds) + 1), "epoch_seconds": seconds, "eval_seconds": [9.0] * len(seconds)})


def test_mean_seconds_per_epoch_and_ratio_to_pgd_at():
    table = compute_cost_table({"pgd_at": _history(2.0, 4.0), "dhat": _history(6.0, 6.0, 9.0), "natural": _history(1.0)},
                               dict.fromkeys(("pgd_at", "dhat", "natural"), "cpu: 2 threads"))
    rows = table.set_index("method")
    assert rows.at["pgd_at", "seconds_per_epoch"] == 3.0 and rows.at["pgd_at", "ratio_to_pgd_at"] == 1.0
    assert rows.at["dhat", "seconds_per_epoch"] == 7.0 and rows.at["dhat", "ratio_to_pgd_at"] == pytest.approx(7 / 3)
    assert rows.at["dhat", "train_seconds"] == 21.0 and rows.at["dhat", "epochs"] == 3  # validation time left out
    assert rows.at["natural", "ratio_to_pgd_at"] == pytest.approx(1 / 3)


def test_no_ratio_without_pgd_at_or_across_devices():
    table = compute_cost_table({"pgd_at": _history(2.0), "dhat": _history(6.0)}, {"pgd_at": "cpu", "dhat": "cuda: H100"})
    assert pd.isna(table.set_index("method").at["dhat", "ratio_to_pgd_at"])
    assert compute_cost_table({"dhat": _history(6.0)}, {})["ratio_to_pgd_at"].isna().all()
    assert compute_cost_table({"dhat": _history(6.0)}, {})["device"].tolist() == ["unknown"]


def test_history_without_epoch_seconds_is_named():
    with pytest.raises(ValueError, match="history of dhat has no epoch_seconds"):
        compute_cost_table({"dhat": pd.DataFrame({"epoch": [1]})}, {})
