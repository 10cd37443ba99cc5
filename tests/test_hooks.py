"""The parameter check runs before any node, for the stages and methods the selected nodes belong to."""

from __future__ import annotations

import copy

import pytest
from kedro.io import DataCatalog, MemoryDataset

from dhat.hooks import ParameterValidationHook
from dhat.pipeline_registry import register_pipelines
from tests.pipelines.memory import load_parameters


@pytest.fixture(scope="module")
def base_params():
    return load_parameters("test")


def _check(params, pipeline):
    catalog = DataCatalog({"parameters": MemoryDataset(params)})
    ParameterValidationHook().before_pipeline_run(run_params={}, pipeline=pipeline, catalog=catalog)


def _with(params, path, value):
    params = copy.deepcopy(params)
    *parents, key = path.split(".")
    target = params
    for part in parents:
        target = target.setdefault(part, {})
    target[key] = value
    return params


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("dhat.method.name", "dhat_plus", "method.name='dhat_plus'"),
        ("pgd_at.method.params.attack.eps", -0.1, "pgd_at.method.params.attack.eps must be >= 0"),
        ("training.epochs", 0, "training.epochs"),
        ("evaluation.suite.eps", -1, "evaluation.suite.eps"),
        ("evaluation.n_evals", 3, "evaluation.n_evals"),
        ("transfer.n_images", 0, "transfer.n_images"),
        ("data.source", "mnist", "data.source='mnist'"),
        ("model.name", "vit", "model.name='vit'"),
        ("analysis.attention_shift.steps", 0, "analysis.attention_shift.steps"),
        ("analysis.robustness_vs_eps.attacks", ["autoattack"], "analysis.robustness_vs_eps.attacks"),
    ],
)
def test_bad_parameters_are_named(base_params, path, value, message):
    train_eval = register_pipelines()["train_eval"]
    _check(base_params, train_eval)  # the environment itself is valid
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        _check(_with(base_params, path, value), train_eval)


def test_only_selected_stages_and_methods_are_checked(base_params):
    pipelines = register_pipelines()
    broken = _with(base_params, "mart.method.name", "nope")
    _check(broken, pipelines["train_eval"])  # MART is not part of train_eval
    with pytest.raises(ValueError, match="nope"):
        _check(broken, pipelines["train_eval_baselines"].only_nodes_with_namespaces(["mart"]))
    _check(_with(base_params, "data.source", "mnist"), pipelines["reporting"])  # reporting reads no data section


def test_study_namespaces_are_checked_against_their_methods_section(base_params):
    study = register_pipelines()["study"].only_nodes_with_namespaces(["study_seed1"])
    _check(base_params, study)
    with pytest.raises(ValueError, match="dhat_plus"):
        _check(_with(base_params, "dhat_true_masks.method.name", "dhat_plus"), study)


def test_sweep_sections_are_checked_when_their_pipeline_runs(base_params):
    pipelines = register_pipelines()
    bad_grid = _with(base_params, "sensitivity.attacks", ["autoattack"])
    _check(bad_grid, pipelines["train_eval"])  # train_eval reads no sensitivity section
    with pytest.raises(ValueError, match="sensitivity.attacks"):
        _check(bad_grid, pipelines["sensitivity"])
    with pytest.raises(ValueError, match="mask_sources.sources='saliency'"):
        _check(_with(base_params, "mask_sources.sources", ["saliency"]), pipelines["mask_sources"])
    # The sensitivity units vary dhat: its method section is what they check.
    with pytest.raises(ValueError, match="dhat_plus"):
        _check(_with(base_params, "dhat.method.name", "dhat_plus"), pipelines["sensitivity"])


def test_a_run_draws_its_figures_headless_but_importing_the_library_does_not_choose_a_backend():
    import subprocess
    import sys

    # Importing the report code leaves matplotlib's backend to the process (a notebook's inline one).
    code = ("import matplotlib; matplotlib.use('svg'); import dhat.stats.reporting, dhat.pipeline_registry; "
            "print(matplotlib.get_backend())")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "svg"
    from dhat.hooks import HeadlessFiguresHook
    from dhat.settings import HOOKS

    assert any(isinstance(hook, HeadlessFiguresHook) for hook in HOOKS)
    code = "import os, matplotlib; matplotlib.use('svg'); from dhat.hooks import HeadlessFiguresHook; " \
           "os.environ.pop('MPLBACKEND', None); HeadlessFiguresHook().before_pipeline_run(); " \
           "print(matplotlib.get_backend(), os.environ['MPLBACKEND'])"
    # and worker processes a runner starts inherit it
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.lower().split() == [
        "agg", "agg"]
