"""Resumable training: a run killed with SIGKILL and rerun ends exactly where an uninterrupted run does."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dhat.engine.recipe import TrainingConfig
from dhat.engine.resume import ResumeSettings, capture_rng, fingerprint, load_state, restore_rng, save_state
from dhat.engine.training import train_model
from dhat.methods import create_method
from dhat.models import build_model
from dhat.tensors import DeviceImageSet

pytestmark = pytest.mark.usefixtures("single_thread")

REPO = Path(__file__).resolve().parents[1]


def _child(method: str, state: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "tests.resume_child", method, str(state), str(out), *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)


def _same_run(a: dict, b: dict) -> None:
    assert a["history"] == b["history"]
    for key in ("best", "last"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)


@pytest.mark.parametrize("method", ["cfa", "sglr"])  # PGD-AT's state: the streamed test below
def test_a_run_killed_after_epoch_two_resumes_to_the_uninterrupted_result(tmp_path, method):
    reference = _child(method, tmp_path / "reference_state.pt", tmp_path / "reference.pt")
    assert reference.returncode == 0, reference.stderr
    crashed = _child(method, tmp_path / "state.pt", tmp_path / "unused.pt", "--kill-after", "2")
    assert crashed.returncode == -signal.SIGKILL and not (tmp_path / "unused.pt").exists()
    assert torch.load(tmp_path / "state.pt", weights_only=True)["epoch"] == 2
    resumed = _child(method, tmp_path / "state.pt", tmp_path / "resumed.pt")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch 2 of 4" in resumed.stderr
    _same_run(torch.load(tmp_path / "reference.pt", weights_only=True),
              torch.load(tmp_path / "resumed.pt", weights_only=True))


def test_a_streamed_run_killed_after_epoch_two_resumes_to_the_memory_mode_result(tmp_path):
    """Stream mode (images in PNG files, two decoding workers): killed, resumed, equal to an uninterrupted memory-mode run."""
    reference = _child("pgd_at", tmp_path / "reference_state.pt", tmp_path / "reference.pt")
    assert reference.returncode == 0, reference.stderr
    stream = ("--stream", str(tmp_path / "images"), "--workers", "2")
    crashed = _child("pgd_at", tmp_path / "state.pt", tmp_path / "unused.pt", "--kill-after", "2", *stream)
    assert crashed.returncode == -signal.SIGKILL and torch.load(tmp_path / "state.pt", weights_only=True)["epoch"] == 2
    resumed = _child("pgd_at", tmp_path / "state.pt", tmp_path / "resumed.pt", *stream)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch 2 of 4" in resumed.stderr
    _same_run(torch.load(tmp_path / "reference.pt", weights_only=True),
              torch.load(tmp_path / "resumed.pt", weights_only=True))
    # The memory-mode state does not resume a streamed run (the data digests differ): it starts afresh.
    fresh = _child("pgd_at", tmp_path / "reference_state.pt", tmp_path / "fresh.pt", *stream)
    assert fresh.returncode == 0 and "resuming" not in fresh.stderr


def test_a_changed_configuration_starts_fresh_and_says_why(tmp_path):
    crashed = _child("pgd_at", tmp_path / "state.pt", tmp_path / "unused.pt", "--kill-after", "2")
    assert crashed.returncode == -signal.SIGKILL
    rerun = _child("pgd_at", tmp_path / "state.pt", tmp_path / "rerun.pt", "--lr", "0.02")
    assert rerun.returncode == 0, rerun.stderr
    assert "belongs to another configuration" in rerun.stderr and "resuming" not in rerun.stderr
    fresh = _child("pgd_at", tmp_path / "fresh_state.pt", tmp_path / "fresh.pt", "--lr", "0.02")
    _same_run(torch.load(tmp_path / "fresh.pt", weights_only=True), torch.load(tmp_path / "rerun.pt", weights_only=True))
    assert fresh.returncode == 0


def _tiny():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (40,), generator=generator)
    images = torch.randint(0, 256, (40, 3, 8, 8), generator=generator, dtype=torch.uint8)
    return DeviceImageSet(images[:32], labels[:32]), DeviceImageSet(images[32:], labels[32:])


def _train(settings: ResumeSettings | None, epochs: int = 2):
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=3, width=4)
    config = TrainingConfig.from_dict({"epochs": epochs, "batch_size": 16, "progress": False, "val_steps": 1})
    train, val = _tiny()
    return train_model(model, create_method("pgd_at", {"attack": {"steps": 1}}), train, val, config, resume=settings)


def test_a_corrupt_state_is_set_aside_and_training_starts_fresh(tmp_path, caplog):
    path = tmp_path / "state.pt"
    path.write_bytes(b"PK\x03\x04 truncated")
    with caplog.at_level(logging.WARNING, logger="dhat.engine.resume"):
        result = _train(ResumeSettings(path, "abc"))
    assert "could not be read" in caplog.text and (tmp_path / "state.pt.corrupt").read_bytes().startswith(b"PK")
    plain = _train(None)
    assert all(torch.equal(result.last_state[k], plain.last_state[k]) for k in plain.last_state)
    assert torch.load(path, weights_only=True)["epoch"] == 2  # a good state replaced the corrupt one


def test_resume_false_and_a_finished_state(tmp_path, caplog):
    settings = ResumeSettings(tmp_path / "state.pt", "abc")
    first = _train(settings)
    # A finished run's state resumes to the same result without training again.
    again = _train(settings)
    assert again.history == first.history and again.best_epoch == first.best_epoch
    with caplog.at_level(logging.INFO, logger="dhat.engine.resume"):
        assert load_state(ResumeSettings(settings.path, "abc", resume=False), "pgd_at") is None
        assert load_state(ResumeSettings(settings.path, "other"), "pgd_at") is None
    assert "training.resume is false" in caplog.text and "another configuration" in caplog.text


def test_states_are_written_atomically_and_random_states_round_trip(tmp_path):
    settings = ResumeSettings(tmp_path / "state.pt", fingerprint(a=1))
    generator = torch.Generator().manual_seed(3)
    rng = capture_rng(generator)
    save_state(settings, {"epoch": 1, "rng": rng})
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]  # no temporary file left behind
    expected = (torch.rand(3), torch.rand(2, generator=generator))
    restore_rng(load_state(settings, "x")["rng"], generator)
    assert torch.equal(torch.rand(3), expected[0]) and torch.equal(torch.rand(2, generator=generator), expected[1])
    assert fingerprint(a=1) == fingerprint(a=1) != fingerprint(a=2)
