"""A run whose methods or analyses need what the data lacks stops before any work, naming who, which key and the fix;
composites leave out what the configured data cannot serve; the run's environment shapes the pipelines."""

from __future__ import annotations

import copy
import logging
import os

import pytest
from click.testing import CliRunner
from kedro.io import DataCatalog, MemoryDataset

from dhat.data.capabilities import TRUE_MASKS, Requirement, describe_unmet, unmet_requirements
from dhat.hooks import ParameterValidationHook
from dhat.parameters import method_requirements, run_requirements, validate_parameters
from dhat.pipeline_registry import COMPOSITES, register_pipelines
from tests.pipelines.memory import load_parameters


@pytest.fixture(scope="module")
def params():
    return load_parameters("test")


def _cifar(params):
    changed = copy.deepcopy(params)
    changed["data"]["source"] = "cifar10"
    return changed


def _trained(pipeline) -> set[str]:
    return {n.namespace for n in pipeline.nodes if "training" in n.tags}


def test_requirements_name_the_namespace_and_the_key_that_asked(params):
    (need,) = method_requirements(params, "dhat_true_masks")
    assert (need.capability, need.who, need.key) == (TRUE_MASKS, "dhat_true_masks",
                                                     "dhat_true_masks.method.params.mask_source: true")
    assert method_requirements(params, "dhat") == [] and method_requirements(params, "pgd_at") == []
    wrapped = {"dhat_awp": {"method": {"name": "awp", "params": {"base_method": "dhat", "base": {"mask_source": "true"}}}}}
    assert method_requirements(wrapped, "dhat_awp")[0].key == "dhat_awp.method.params.base.mask_source: true"
    external = {"dhat": {"method": {"name": "dhat", "params": {"mask_source": "external"}}}}
    assert method_requirements(external, "dhat")[0].capability == "external_masks"
    assert [r.who for r in run_requirements(params, ["dhat"], sections=["mask_sources"])] == ["mask_sources"]


def test_the_oracle_on_data_without_true_masks_stops_with_every_part_of_the_fix(params):
    with pytest.raises(ValueError) as info:
        validate_parameters(_cifar(params), {"training"}, ["natural", "dhat_true_masks"])
    message = str(info.value)
    for part in ("nothing was started", "dhat_true_masks (dhat_true_masks.method.params.mask_source: true)",
                 "true foreground masks", "data.source='cifar10'", "--namespaces", "conf/<env>"):
        assert part in message, part
    validate_parameters(_cifar(params), {"training"}, ["natural", "dhat"])  # the others run
    validate_parameters(params, {"training"}, ["dhat_true_masks"])  # the embedded data has them


def test_mask_sources_that_the_data_lacks_stop_the_run(params):
    for source, key in (("true", "mask_sources.sources"), ("external", "mask_sources.sources")):
        changed = _cifar(params)
        changed["mask_sources"]["sources"] = ["integrated_gradients", source]
        with pytest.raises(ValueError, match=rf"(?s){key}: \[\.\.\., {source}, \.\.\.\].*remove '{source}'"):
            validate_parameters(changed, {"mask_precomputation"}, [], sections=["mask_sources"])
    changed = _cifar(params)
    changed["mask_sources"]["sources"] = ["integrated_gradients", "external"]
    changed["data"]["external_masks"] = __file__  # any existing path: what matters is that it is named
    validate_parameters(changed, {"mask_precomputation"}, [], sections=["mask_sources"])


def test_the_message_lists_every_unmet_requirement():
    needs = [Requirement(TRUE_MASKS, "a", "a.key: true", "fix a"), Requirement("external_masks", "b", "b.key", "fix b")]
    unmet = unmet_requirements(needs, {TRUE_MASKS})
    assert [r.who for r in unmet] == ["b"]
    assert "fix b" in describe_unmet(unmet, {"source": "embedded"}, {TRUE_MASKS}) and "fix a" not in describe_unmet(
        unmet, {"source": "embedded"}, {TRUE_MASKS})
    with pytest.raises(ValueError, match="unknown data capability"):
        Requirement("colour", "a", "k", "f")


def test_composites_built_for_data_without_true_masks_leave_the_oracle_out():
    base, cifar = register_pipelines(), register_pipelines("cifar10")
    assert "dhat_true_masks" in _trained(base["train_eval"])
    for name in COMPOSITES:
        assert "dhat_true_masks" not in _trained(cifar[name]), name
    assert _trained(cifar["train_eval"]) == {"natural", "pgd_at", "uiat", "dhat"}
    assert not any(ns.endswith(".dhat_true_masks") for ns in _trained(cifar["study"]))
    assert "mask_source__true" in _trained(base["mask_sources"]) and "mask_source__true" not in _trained(cifar["mask_sources"])
    report = next(n for n in cifar["train_eval"].nodes if n.name == "build_report")
    assert "dhat_true_masks.metrics" not in report.inputs  # the report does not wait for what never runs


def _hook_run(params, pipeline, **run_params):
    catalog = DataCatalog({"parameters": MemoryDataset(params)})
    ParameterValidationHook().before_pipeline_run(run_params=run_params, pipeline=pipeline, catalog=catalog)


def test_the_log_says_what_a_composite_left_out(monkeypatch, caplog):
    monkeypatch.setenv("KEDRO_ENV", "cifar10")
    cifar = load_parameters("cifar10")
    pipeline = register_pipelines()["train_eval"]
    with caplog.at_level(logging.INFO, logger="dhat.hooks"):
        _hook_run(cifar, pipeline, env="cifar10", pipeline_names=["train_eval"])
    assert "train_eval leaves out dhat_true_masks: dhat_true_masks.method.params.mask_source: true needs true " \
           "foreground masks, which the configured data (data.source='cifar10' in conf/) does not provide" in caplog.text


def test_a_session_whose_env_would_shape_the_pipelines_otherwise_stops_saying_what_to_type(monkeypatch):
    monkeypatch.delenv("KEDRO_ENV", raising=False)
    base_pipelines = register_pipelines()
    cifar = load_parameters("cifar10")
    with pytest.raises(ValueError, match=r"'mask_sources' was built from the base configuration.*KEDRO_ENV=cifar10 kedro run "
                                         r"--pipelines=mask_sources"):
        _hook_run(cifar, base_pipelines["mask_sources"], env="cifar10", pipeline_names=["mask_sources"])
    with pytest.raises(ValueError, match="KEDRO_ENV=cifar10"):
        _hook_run(cifar, base_pipelines["sensitivity"], env="cifar10", pipeline_names=["sensitivity"])
    # Pipelines that the environment does not reshape run as they are.
    _hook_run(cifar, base_pipelines["train_eval_paper"], env="cifar10", pipeline_names=["train_eval_paper"])
    monkeypatch.setenv("KEDRO_ENV", "cifar10")
    _hook_run(cifar, register_pipelines()["mask_sources"], env="cifar10", pipeline_names=["mask_sources"])


def test_the_projects_kedro_run_is_kedros_with_env_exported(monkeypatch):
    from kedro.framework.cli.project import run as kedro_run

    from dhat import cli

    seen = {}
    monkeypatch.setattr(kedro_run, "callback", lambda **options: seen.update(options, kedro_env=os.environ.get("KEDRO_ENV")))
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k != "KEDRO_ENV"})  # undone after
    assert [p.name for p in cli.run.params] == [p.name for p in kedro_run.params]  # every option of Kedro's run
    result = CliRunner().invoke(cli.cli, ["run", "--env", "cifar10", "--pipelines", "mask_sources"])
    assert result.exit_code == 0, result.output
    assert seen["env"] == "cifar10" and seen["kedro_env"] == "cifar10" and seen["pipelines"] == ["mask_sources"]
    del os.environ["KEDRO_ENV"]
    result = CliRunner().invoke(cli.cli, ["run", "--pipelines", "train_eval"])
    assert result.exit_code == 0 and seen["kedro_env"] is None  # without --env nothing is exported
