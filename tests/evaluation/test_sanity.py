"""Gradient-masking sanity checks."""

from __future__ import annotations

import logging

import pytest

from dhat.evaluation import evaluate_attacks, sanity_checks
from tests.evaluation.helpers import MeanThresholdModel, brightness_data, sanity_config

pytestmark = pytest.mark.usefixtures("single_thread")


def test_sanity_checks_pass_on_a_normal_model(caplog: pytest.LogCaptureFixture) -> None:
    model = MeanThresholdModel(quantise=False)
    x, y = brightness_data(16, distance=0.1, seed=0)
    config = sanity_config()
    results = evaluate_attacks(model, x, y, config)
    assert results["clean"] == 100.0 and results["pgd10"] == 0.0  # shifting all pixels by eps crosses 0.5
    with caplog.at_level(logging.WARNING, logger="dhat.evaluation"):
        checks = sanity_checks(model, x, y, config, results)
    assert [c["name"] for c in checks] == ["pgd_beats_fgsm", "accuracy_vanishes_with_eps", "white_box_beats_square"]
    assert all(c["passed"] for c in checks), checks
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_sanity_checks_catch_gradient_masking(caplog: pytest.LogCaptureFixture) -> None:
    model = MeanThresholdModel(quantise=True)
    x, y = brightness_data(16, distance=0.1, seed=0)
    config = sanity_config()
    results = evaluate_attacks(model, x, y, config)
    # Zero gradients: the white-box attacks are stuck although every point is within eps of the boundary.
    assert results["clean"] == 100.0 and results["pgd10"] == 100.0
    with caplog.at_level(logging.WARNING, logger="dhat.evaluation"):
        checks = sanity_checks(model, x, y, config, results)
    by_name = {c["name"]: c for c in checks}
    assert not by_name["accuracy_vanishes_with_eps"]["passed"]
    assert by_name["accuracy_vanishes_with_eps"]["values"]["accuracy"][-1] == 100.0
    assert not by_name["white_box_beats_square"]["passed"]
    assert by_name["white_box_beats_square"]["values"]["square"] < 50.0
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "accuracy_vanishes_with_eps" in warned and "white_box_beats_square" in warned


def test_sanity_checks_run_missing_attacks_themselves() -> None:
    model = MeanThresholdModel(quantise=False)
    x, y = brightness_data(8, distance=0.1, seed=1)
    checks = sanity_checks(model, x, y, sanity_config())
    assert checks[0]["values"] == {"fgsm": 0.0, "pgd10": 0.0}


# ---------------------------------------------------------------------------
# Robust gap
# ---------------------------------------------------------------------------
