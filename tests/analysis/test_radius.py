"""Robustness against the radius: rows, step scaling and values checked by an independent computation."""

import pytest
import torch

from dhat.analysis.radius import RadiusSweepConfig, robustness_vs_eps
from tests.evaluation.helpers import ce_input_grad, hand_accuracy, linear_setup


def test_fgsm_rows_equal_a_hand_computed_fgsm_at_each_radius():
    model, w, b, x, y = linear_setup()
    config = RadiusSweepConfig(radii=(0.05, 0.2), attacks=("fgsm", "pgd10"), batch_size=5)
    table = robustness_vs_eps(model, x, y, config)
    assert table[["radius", "attack"]].values.tolist() == [
        [0.0, "clean"], [0.05, "fgsm"], [0.05, "pgd10"], [0.2, "fgsm"], [0.2, "pgd10"]]
    assert table.iloc[0]["accuracy"] == pytest.approx(hand_accuracy(w, b, x, y))
    for eps in (0.05, 0.2):
        x_fgsm = (x.double() + eps * ce_input_grad(w, b, x.double(), y).sign()).clamp(0, 1)
        row = table[(table["radius"] == eps) & (table["attack"] == "fgsm")].iloc[0]
        assert row["accuracy"] == pytest.approx(hand_accuracy(w, b, x_fgsm, y))
        assert row["low"] <= row["accuracy"] <= row["high"] and row["n_images"] == 12
    pgd = table[table["attack"] == "pgd10"]["accuracy"].tolist()
    assert pgd[0] >= pgd[1]  # a larger ball cannot help the model (linear model: PGD finds the corner)


def test_step_is_a_fixed_fraction_of_the_radius_and_only_requested_pgd_runs():
    config = RadiusSweepConfig(attacks=("pgd20", "cw"), step_fraction=0.25)
    suite = config.suite(8 / 255)
    assert suite.step_size == pytest.approx(2 / 255) and suite.pgd_steps == (20,) and not suite.autoattack


def test_config_errors_name_the_parameter():
    with pytest.raises(ValueError, match="analysis.robustness_vs_eps.attacks"):
        RadiusSweepConfig.from_dict({"attacks": ["autoattack"]})
    with pytest.raises(ValueError, match="analysis.robustness_vs_eps.radii"):
        RadiusSweepConfig.from_dict({"radii": [0]})
    assert RadiusSweepConfig.from_dict({"radii": ["16/255", "2/255"]}).radii == pytest.approx((2 / 255, 16 / 255))


def test_model_mode_is_restored():
    model, _, _, x, y = linear_setup()
    model.train()
    robustness_vs_eps(model, x, y, RadiusSweepConfig(radii=(0.1,), attacks=("fgsm",)))
    assert model.training
    assert torch.is_grad_enabled()
