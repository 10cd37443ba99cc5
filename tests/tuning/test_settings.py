"""``tune`` settings: the YAML of conf/base is valid, and what would make the comparison unfair is refused."""

from __future__ import annotations

import pytest

from dhat.parameters import validate_parameters
from dhat.tuning import TuneSettings
from tests.pipelines.memory import load_parameters


def test_conf_base_tunes_the_four_methods_alike_and_tests_on_fresh_seeds():
    settings = TuneSettings.from_dict(load_parameters("base")["tune"])
    assert settings.methods == ("pgd_at", "trades", "uiat", "dhat")
    assert settings.protocols == ("standard", "decorrelated")
    shared = {d.path for d in TuneSettings.from_dict(load_parameters("base")["tune"]).dimensions("pgd_at")}
    for method in settings.methods:  # the shared recipe is searched for every method, PGD-AT included
        assert shared <= {d.path for d in settings.dimensions(method)}
    assert {d.path for d in settings.dimensions("dhat")} >= {"params.lambda1", "params.lambda2",
                                                            "params.background_share", "params.floe"}
    assert len(settings.test_seeds) >= 10
    assert not ({settings.seed, *settings.rescore.seeds} & set(settings.test_seeds))


def test_the_parameter_check_writes_each_space_into_its_method(monkeypatch):
    params = load_parameters("base")
    validate_parameters(params, [], [], sections=["tune"])
    params["tune"] = {**params["tune"], "spaces": {**params["tune"]["spaces"], "dhat": {"params.lamda1": {"low": 0, "high": 1}}}}
    with pytest.raises(ValueError, match=r"tune.spaces.dhat .*lamda1"):
        validate_parameters(params, [], [], sections=["tune"])


@pytest.mark.parametrize(("change", "message"), [
    ({"test_seeds": [100, 200]}, "must be disjoint"),
    ({"rescore": {"seeds": [100]}}, "must be disjoint"),
    ({"n_trials": 0}, "tune.n_trials must be an integer >= 1"),
    ({"protocols": ["balanced"]}, "tune.protocols must list some of standard, decorrelated"),
    ({"methods": ["pgd_at", "pgd_at"]}, "distinct names"),
    ({"methods": ["pgd-at"]}, "not a method namespace"),
    ({"objective": "val_pgd50"}, "tune.objective"),
    ({"comparisons": [["dhat", "dhat-paper"]]}, "'dhat-paper' is not a method namespace"),
    ({"storage": {"heartbeat_seconds": 0}}, "tune.storage.heartbeat_seconds"),
    ({"baselines": ["dhat"]}, "either tuned or an untuned baseline"),
    ({"shared_space": {"params.beta": {"low": 1, "high": 2}}, "spaces": {"uiat": {"params.beta": {"low": 1, "high": 2}}}},
     "repeats a path"),
])
def test_settings_that_break_the_protocol_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        TuneSettings.from_dict({**load_parameters("base")["tune"], **change})


@pytest.mark.parametrize("env", ["base", "test", "cifar10", "cifar100", "imagenet", "cifar10_cpu", "study_extended"])
def test_every_environments_tuning_fits_its_method_sections(env):
    params = load_parameters(env)
    settings = validate_parameters(params, [], [], sections=["tune"]) or TuneSettings.from_dict(params["tune"])
    if env in ("cifar10", "cifar100", "imagenet"):  # the paper's absolute mask rule: its threshold is omega
        paths = {d.path for d in settings.dimensions("dhat")}
        assert "params.omega" in paths and "params.background_share" not in paths
