"""Sweep settings, grid values from namespaces, and the sweep tables by hand (dhat.stats.sweeps)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dhat.stats.sweeps import (
    MaskSourceSettings,
    SensitivitySettings,
    grid_value,
    mask_source_table,
    sensitivity_table,
    value_token,
    with_method_params,
)


@pytest.mark.parametrize(("value", "token"), [(0.5, "0p5"), (4.0, "4"), (0.0, "0"), (-1e-05, "m1em05"), (12.25, "12p25")])
def test_value_tokens_are_namespace_safe(value, token):
    assert value_token(value) == token
    assert "." not in token


def test_an_empty_list_leaves_a_parameter_out():
    settings = SensitivitySettings.from_dict({"grid": {"lambda1": [1.0], "background_share": [], "omega": [0.1, 0.2]}})
    assert dict(settings.grid) == {"lambda1": (1.0,), "omega": (0.1, 0.2)}


def test_grid_value_reads_the_value_back_and_names_a_mismatch():
    settings = SensitivitySettings.from_dict({"grid": {"lambda1": [0.5, 2]}})
    assert grid_value(settings, "lambda1=0p5") == ("lambda1", 0.5)
    assert grid_value(settings, "lambda1=2") == ("lambda1", 2.0)
    with pytest.raises(ValueError, match=r"sensitivity.grid.lambda1 is \[0.5, 2.0\].*KEDRO_ENV"):
        grid_value(settings, "lambda1=4")
    with pytest.raises(ValueError, match="sensitivity.grid.lambda2"):
        grid_value(settings, "lambda2=1")


@pytest.mark.parametrize(("values", "message"), [
    ({"grid": {}}, "sensitivity.grid must map"),
    ({"grid": {"lambda1": []}}, "leaves out every parameter"),
    ({"grid": {"lambda1": "0.5"}}, "sensitivity.grid.lambda1 must be a list"),
    ({"grid": {"lambda1": [1, 1.0]}}, "repeats a value"),
    ({"attacks": ["autoattack"]}, "sensitivity.attacks"),
    ({"seeds": [0]}, "sensitivity.seeds"),
])
def test_sensitivity_settings_errors_name_the_parameter(values, message):
    with pytest.raises(ValueError, match=message):
        SensitivitySettings.from_dict(values)


def test_mask_source_settings_check_sources_and_options():
    assert MaskSourceSettings.from_dict({}).sources == ("gradcam", "captum_gradcam", "integrated_gradients", "true")
    with pytest.raises(ValueError, match=r"mask_sources.sources='saliency' is not a registered"):
        MaskSourceSettings.from_dict({"sources": ["saliency"]})
    with pytest.raises(ValueError, match="distinct"):
        MaskSourceSettings.from_dict({"sources": ["gradcam", "gradcam"]})
    with pytest.raises(ValueError, match=r"options names source\(s\) \['integrated_gradients'\]"):
        MaskSourceSettings.from_dict({"sources": ["gradcam"]})


def test_with_method_params_overrides_a_copy():
    section = {"name": "dhat", "params": {"lambda1": 1.0, "attack": {"eps": 0.1}}}
    changed = with_method_params(section, lambda1=2.0)
    assert changed["params"]["lambda1"] == 2.0 and section["params"]["lambda1"] == 1.0
    changed["params"]["attack"]["eps"] = 0.5
    assert section["params"]["attack"]["eps"] == 0.1


def _record(correct: dict[str, list[int]], **extra):
    from dhat.intervals import accuracy_interval

    return {"accuracy": {a: accuracy_interval(np.array(c, bool)).as_dict() for a, c in correct.items()},
            "correct": correct, "n_images": len(next(iter(correct.values()))), **extra}


def test_sensitivity_table_is_long_and_sorted_by_value():
    records = [_record({"clean": [1, 1, 0, 0], "pgd20": [1, 0, 0, 0]}, parameter="lambda1", value=2.0),
               _record({"clean": [1, 1, 1, 0], "pgd20": [0, 0, 0, 0]}, parameter="lambda1", value=0.5)]
    table = sensitivity_table(records)
    assert table[["value", "attack", "accuracy"]].values.tolist() == [
        [0.5, "clean", 75.0], [0.5, "pgd20", 0.0], [2.0, "clean", 50.0], [2.0, "pgd20", 25.0]]


def test_sensitivity_runs_are_paired_with_the_run_at_the_default_value():
    records = [_record({"clean": [1, 1, 0, 0]}, parameter="lambda1", value=1.0),
               _record({"clean": [1, 1, 1, 0]}, parameter="lambda1", value=0.5),
               _record({"clean": [0, 1, 0, 0]}, parameter="lambda2", value=2.0)]
    table = sensitivity_table(records, {"lambda1": 1.0, "lambda2": 1.0}).set_index(["parameter", "value"])
    assert table.loc[("lambda1", 0.5), "difference"] == pytest.approx(25.0)  # one more image right of four
    assert table.loc[("lambda1", 1.0), "difference"] == 0.0
    low, high = table.loc[("lambda1", 0.5), ["difference_low", "difference_high"]]
    assert low <= 25.0 <= high
    assert pd.isna(table.loc[("lambda2", 2.0), "difference"])  # the grid has no run at lambda2's default


def test_mask_source_table_pairs_every_source_with_gradcam_on_the_same_images():
    gradcam = _record({"clean": [1, 0, 1, 0, 1]}, source="gradcam", map_seconds=1.5,
                      masks={"coverage": 0.6, "iou_true_background": 0.5})
    true = _record({"clean": [1, 1, 1, 0, 1]}, source="true", map_seconds=0.0,
                   masks={"coverage": 0.62, "iou_true_background": 1.0})
    table = mask_source_table([gradcam, true]).set_index("source")
    assert table.at["true", "clean"] == 80.0 and table.at["gradcam", "clean"] == 60.0
    # Per image: differences 0, 1, 0, 0, 0 -> +20 points.
    assert table.at["true", "clean - gradcam"] == pytest.approx(20.0)
    assert table.at["true", "clean - gradcam low"] <= 20.0 <= table.at["true", "clean - gradcam high"]
    assert np.isnan(table.at["gradcam", "clean - gradcam"])
    assert table.at["true", "iou_true_background"] == 1.0 and table.at["gradcam", "map_seconds"] == 1.5
