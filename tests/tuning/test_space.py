"""Search spaces: YAML entries checked by name, suggestions of the right kind, values written into a section."""

from __future__ import annotations

import optuna
import pytest

from dhat.tuning.space import Dimension, apply_values, midpoint_values, parse_space, suggest


def test_every_kind_of_entry_parses_and_suggests_inside_its_range():
    space = parse_space({"training.lr": {"low": 0.01, "high": 0.2, "log": True},
                         "params.beta": {"low": 1.0, "high": 3.0},
                         "params.steps": {"low": 2, "high": 5, "int": True},
                         "params.inverse.eps": {"choices": ["2/255", "4/255"]},
                         "params.background_share": None}, "tune.spaces.x")  # null: left out
    assert [d.path for d in space] == ["training.lr", "params.beta", "params.steps", "params.inverse.eps"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        values = suggest(study.ask(), space)
        assert 0.01 <= values["training.lr"] <= 0.2
        assert 1.0 <= values["params.beta"] <= 3.0
        assert isinstance(values["params.steps"], int) and 2 <= values["params.steps"] <= 5
        assert values["params.inverse.eps"] in ("2/255", "4/255")
    # the geometric middle of a log range, the arithmetic one otherwise, the first choice
    assert midpoint_values(space) == pytest.approx(
        {"training.lr": (0.01 * 0.2) ** 0.5, "params.beta": 2.0, "params.steps": 4, "params.inverse.eps": "2/255"})


@pytest.mark.parametrize(("path", "spec", "message"), [
    ("lr", {"low": 0.1, "high": 1}, "starts with params or training"),
    ("training.lr", {"low": 0.2, "high": 0.1}, "must be below high"),
    ("training.lr", {"low": 0.0, "high": 0.1, "log": True}, "low > 0"),
    ("params.beta", {"choices": [1]}, "at least two values"),
    ("params.beta", {"choices": [1, 1]}, "repeats a value"),
    ("params.beta", {"low": 1}, "needs both low and high"),
    ("params.beta", {"low": 1, "high": 2, "step": 1}, "must be"),
    ("params.k", {"low": 1.5, "high": 3, "int": True}, "whole-number bounds"),
])
def test_a_bad_entry_names_its_yaml_path(path, spec, message):
    with pytest.raises(ValueError, match=message) as error:
        Dimension.from_spec(path, spec, "tune.spaces.dhat")
    assert f"tune.spaces.dhat.{path}" in str(error.value)


def test_values_are_written_into_a_copy_of_the_method_section():
    method = {"name": "uiat", "params": {"beta": 3.5, "inverse": {"eps": "8/255", "steps": 10}}}
    tuned = apply_values(method, {"params.beta": 1.0, "params.inverse.eps": "4/255", "training.lr": 0.1})
    assert tuned == {"name": "uiat", "params": {"beta": 1.0, "inverse": {"eps": "4/255", "steps": 10}},
                     "training": {"lr": 0.1}}
    assert method["params"] == {"beta": 3.5, "inverse": {"eps": "8/255", "steps": 10}}  # untouched
    with pytest.raises(ValueError, match="params.beta is 3.5, not a mapping"):
        apply_values(method, {"params.beta.x": 1})
