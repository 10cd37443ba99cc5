"""Data-parallel training on CPU (gloo) with PyTorch's elastic launcher: the ranks end as one run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dhat.engine.distributed import Distributed, launch, shard
from dhat.engine.fitting import fit
from dhat.engine.recipe import TrainingConfig
from tests.distributed_child import N_TRAIN, engine_worker, fit_worker, tiny_data

REPO = Path(__file__).resolve().parents[1]


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name, value in a.items():
        assert torch.equal(value, b[name]), name


@pytest.mark.parametrize("method", [{"name": "pgd_at", "params": {"attack": {"steps": 2}}},
                                    {"name": "dhat", "params": {"attack": {"steps": 2}, "inverse": {"steps": 2}}}])
def test_pgd_at_and_dhat_train_to_identical_weights_on_both_ranks(method):
    results = launch(fit_worker, 2, "cpu", method, 3)
    assert sorted(results) == [0, 1]
    (best0, last0, history0), (best1, last1, history1) = results[0], results[1]
    _same_weights(last0["state_dict"], last1["state_dict"])
    _same_weights(best0["state_dict"], best1["state_dict"])
    assert history0["epoch"].tolist() == [1, 2, 3]  # one row per epoch
    assert history0["loss"].tolist() == history1["loss"].tolist()  # means over both ranks' images
    assert history0["loss"].iloc[-1] < history0["loss"].iloc[0]
    assert last0["metadata"]["device"].endswith("x 2 processes")


@pytest.mark.parametrize("name", ["sglr", "cfa"])
def test_per_sample_state_is_the_same_on_every_rank_and_covers_every_image(name):
    params = ({"attack": {"steps": 2}, "start_fraction": 0.34} if name == "sglr"
              else {"ccm_start_epoch": 1, "fawa_threshold": 0.0, "base": {"attack": {"steps": 2}}})
    results = launch(engine_worker, 2, "cpu", name, params, 3)
    _same_weights(results[0]["last"], results[1]["last"])
    if name == "sglr":
        # Each rank refined the labels of its half of every batch; after the exchange both hold all of them.
        assert torch.equal(results[0]["soft_labels"], results[1]["soft_labels"])
        assert results[0]["initialised"].all() and results[0]["soft_labels"].shape[0] == N_TRAIN
        assert torch.allclose(results[0]["soft_labels"].sum(1), torch.ones(N_TRAIN))  # still distributions
    else:
        # The class-wise counts of the last epoch cover every training image, not one rank's half.
        assert int(results[0]["count"].sum()) == N_TRAIN == int(results[1]["count"].sum())
        assert torch.equal(results[0]["class_accuracy"], results[1]["class_accuracy"])


def test_a_rank_that_crashes_is_resumed_to_the_uninterrupted_result(tmp_path):
    """``fit`` launches its own workers (reference and resumed runs); rank 0 is killed after epoch 2."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}

    def child(state: str, out: str, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tests.resume_child", "sglr", str(tmp_path / state),
                               str(tmp_path / out), "--devices", "2", *extra],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)

    reference = child("reference_state.pt", "reference.pt")
    assert reference.returncode == 0, reference.stderr
    crashed = child("state.pt", "unused.pt", "--kill-after", "2")
    assert crashed.returncode != 0 and not (tmp_path / "unused.pt").exists()
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state["epoch"] == 2 and len(state["rng_ranks"]) == 2  # every rank's random state, for an exact resume
    resumed = child("state.pt", "resumed.pt")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch 2 of 4" in resumed.stderr
    a, b = (torch.load(tmp_path / f, weights_only=True) for f in ("reference.pt", "resumed.pt"))
    assert a["history"] == b["history"]
    _same_weights(a["last"], b["last"])


def test_shards_split_every_batch_without_overlap():
    index = torch.arange(7)
    parts = [shard(index, Distributed(rank, 2, rank)) for rank in (0, 1)]
    assert parts[0].tolist() == [0, 1, 2, 3] and parts[1].tolist() == [4, 5, 6]
    assert shard(index, None) is index


def test_bad_device_counts_are_named():
    with pytest.raises(ValueError, match="training.devices"):
        TrainingConfig.from_dict({"devices": 0})
    with pytest.raises(ValueError, match=r"training.devices \(4\) exceeds training.batch_size \(2\)"):
        TrainingConfig.from_dict({"devices": 4, "batch_size": 2})
    train, val, info, _ = tiny_data()
    with pytest.raises(ValueError, match="cannot train data-parallel; set training.devices: 1"):
        fit(train, val, None, info, {"name": "awp", "params": {"base_method": "pgd_at"}}, {"name": "small_cnn", "width": 4},
            {"epochs": 1, "devices": 2}, "cpu")
    with pytest.raises(ValueError, match="training.sync_batchnorm works on CUDA only"):
        fit(train, val, None, info, {"name": "pgd_at"}, {"name": "small_cnn", "width": 4},
            {"epochs": 1, "devices": 2, "sync_batchnorm": True}, "cpu")
    with pytest.raises(ValueError, match="launch needs at least 2 processes"):
        launch(fit_worker, 1, "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="GPU"):
            launch(fit_worker, 2, "cuda")
