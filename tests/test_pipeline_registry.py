"""The registered pipelines: static composites from the method catalog, picklable nodes tagged by stage."""

from __future__ import annotations

import pickle

import pytest

from dhat.methods.catalog import GROUPS, namespaces
from dhat.parameters import STAGES
from dhat.pipeline_registry import COMPOSITES, register_pipelines
from dhat.pipelines.reporting.pipeline import RUN_OUTPUTS, RUN_SHARED


@pytest.fixture(scope="module")
def registry():
    return register_pipelines()


def test_every_stage_and_composite_is_registered(registry):
    extra = {"study", "study_ablations", "sensitivity", "mask_sources", "tune", "tune_test", "evaluate_external",
             "__default__"}
    assert set(STAGES) | set(COMPOSITES) | extra == set(registry)
    assert registry["__default__"].nodes == registry["train_eval"].nodes


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_composites_train_the_methods_of_their_catalog_groups(registry, name):
    trained = {n.namespace for n in registry[name].nodes if "training" in n.tags}
    assert trained == set(namespaces(COMPOSITES[name]))
    assert {n.namespace for n in registry[name].nodes if "analysis" in n.tags} == trained
    gathers = {f"gather_{scan}" for scan in [*RUN_OUTPUTS, *RUN_SHARED]}
    assert {n.name for n in registry[name].nodes if not n.namespace} == {
        "ingest_data", "train_mask_model", "compute_attention_masks", "transfer_attacks", "draw_attention_shift",
        "draw_robustness_vs_eps", "tabulate_compute_cost", "build_report", *gathers}


def test_train_eval_is_the_core_comparison_and_all_covers_every_group(registry):
    assert namespaces(COMPOSITES["train_eval"]) == ("natural", "pgd_at", "uiat", "dhat", "dhat_true_masks")
    # The paper's comparison runs on data without true masks (CIFAR): it must not contain the oracle.
    assert "dhat_true_masks" not in namespaces(COMPOSITES["train_eval_paper"])
    assert set(COMPOSITES["train_eval_all"]) == set(GROUPS)


def test_nodes_are_named_module_level_functions_with_one_stage_tag(registry):
    for node in registry["train_eval_all"].nodes:
        func = node.func
        assert "<locals>" not in func.__qualname__ and "<lambda>" not in func.__qualname__, node.name
        assert pickle.loads(pickle.dumps(func)) is func, node.name  # ParallelRunner can ship it
        assert len(set(node.tags) & set(STAGES)) == 1, node.name


@pytest.mark.parametrize("name", ["train_eval", "train_eval_paper"])
def test_the_report_of_a_composite_reads_the_outputs_of_its_own_namespaces(registry, name):
    pipe = registry[name]
    methods = namespaces(COMPOSITES[name])
    producer = {out: n for n in pipe.nodes for out in n.outputs}
    report = next(n for n in pipe.nodes if n.name == "build_report")
    metrics = producer[report.inputs[0]]  # the report's first input: the run's metrics, gathered
    assert metrics.name == "gather_evaluated_metrics"
    assert metrics.inputs == [f"{m}.metrics" for m in methods]
    models = producer[next(n for n in pipe.nodes if n.name == "transfer_attacks").inputs[0]]
    assert models.inputs == [f"{m}.model_best" for m in methods]
    # No scan of results on disk is left in the run, except the sweeps' own pipelines' tables.
    assert {d for d in pipe.inputs() if not d.startswith("params:") and not d.endswith("training_state")} == {
        "sensitivity_results", "mask_source_results"}


def test_the_stand_alone_report_reads_every_result_on_disk(registry):
    report = next(n for n in registry["reporting"].nodes if n.name == "build_report")
    assert {"evaluated_metrics", "per_image_results", "training_histories"} <= set(report.inputs)
    assert not any(d.endswith(".metrics") for n in registry["reporting"].nodes for d in n.inputs)


def test_study_runs_every_core_method_per_seed_with_the_seed_from_its_namespace(registry):
    from dhat.pipelines.study.pipeline import STUDY_GROUPS
    from dhat.stats.study import StudySettings

    STUDY_SEEDS = StudySettings().seeds

    trained = {n.namespace for n in registry["study"].nodes if "training" in n.tags}
    assert trained == {f"study_seed{s}.{m}" for s in STUDY_SEEDS for m in namespaces(STUDY_GROUPS)}
    train = next(n for n in registry["study"].nodes if n.name == "study_seed1.dhat.train")
    assert "study_seed1.seed" in train.inputs and "params:dhat.method" in train.inputs


def test_sensitivity_and_mask_source_namespaces_come_from_the_yaml_lists(registry):
    from dhat.stats.sweeps import MaskSourceSettings, SensitivitySettings, value_token
    from tests.pipelines.memory import load_parameters

    base = load_parameters("base")
    grid = SensitivitySettings.from_dict(base["sensitivity"]).grid
    trained = {n.namespace for n in registry["sensitivity"].nodes if "training" in n.tags}
    assert trained == {f"sensitivity__{p}__{value_token(v)}" for p, values in grid.items() for v in values}
    assert len(trained) == sum(len(v) for v in grid.values())
    train = next(n for n in registry["sensitivity"].nodes if n.name == "sensitivity__lambda1__0p5.train")
    assert "params:dhat.method" in train.inputs and "sensitivity__lambda1__0p5.grid_point" in train.inputs
    figures = {n.name for n in registry["sensitivity"].nodes if n.name.startswith("draw_sensitivity_")}
    assert figures == {f"draw_sensitivity_{p}" for p in grid}
    sources = MaskSourceSettings.from_dict(base["mask_sources"]).sources
    assert {n.namespace for n in registry["mask_sources"].nodes if "training" in n.tags} == {
        f"mask_source__{s}" for s in sources}


def test_the_kedro_env_environment_changes_the_grid(monkeypatch):
    from dhat.pipelines.composition import configured_section

    assert configured_section("sensitivity")["grid"]["lambda1"] == [0.0, 0.5, 1.0, 2.0, 4.0]
    monkeypatch.setenv("KEDRO_ENV", "test")
    grid = configured_section("sensitivity")["grid"]
    assert grid["lambda1"] == [0.0, 1.0] and grid["lambda2"] == [1.0]  # soft merge keeps base's other keys
    monkeypatch.chdir("/")
    assert configured_section("sensitivity") == {}


def test_the_extended_study_adds_seeds_and_writes_its_own_aggregates(monkeypatch):
    """`KEDRO_ENV=study_extended` reuses the five-seed study's units and never overwrites its tables."""
    from kedro.config import OmegaConfigLoader

    from dhat.pipelines.composition import configured_section
    from dhat.pipelines.study.pipeline import STUDY_GROUPS
    from dhat.stats.study import StudySettings

    base = StudySettings.from_dict(configured_section("study"))
    monkeypatch.setenv("KEDRO_ENV", "study_extended")
    extended = StudySettings.from_dict(configured_section("study"))
    assert base.methods is None and set(base.seeds) < set(extended.seeds)
    assert set(extended.methods) <= set(namespaces(STUDY_GROUPS))
    trained = {n.namespace for n in register_pipelines()["study"].nodes if "training" in n.tags}
    assert trained == {f"study_seed{s}.{m}" for s in extended.seeds for m in extended.methods}

    def aggregate_paths(env):
        catalog = OmegaConfigLoader("conf", base_env="base", default_run_env=env)["catalog"]
        return {name: catalog[name]["filepath"] for name in ("study_table", "study_paired_table", "study_report")}

    base_paths, extended_paths = aggregate_paths("base"), aggregate_paths("study_extended")
    assert not set(base_paths.values()) & set(extended_paths.values())


def test_only_train_eval_s_radius_sweep_reads_the_evaluation_record_of_its_run(registry):
    inputs = {name: next(n.inputs for n in registry[name].nodes if n.name == "dhat.analyse_robustness_vs_eps")
              for name in ("train_eval", "analysis")}
    assert {"dhat.per_image", "params:evaluation"} <= set(inputs["train_eval"])
    assert "dhat.per_image" not in inputs["analysis"]  # stand-alone: crafts everything, needs no evaluation


def test_the_pipelines_are_built_again_when_a_configuration_file_changes_and_only_then(tmp_path, monkeypatch):
    """register_pipelines keeps its last build; an edited grid (one namespace per value) gives a new one."""
    import os
    import shutil

    from tests.pipelines.memory import REPO

    shutil.copytree(REPO / "conf", tmp_path / "conf")
    monkeypatch.chdir(tmp_path)  # the pipelines read conf/ under the working folder, as `kedro run` does
    first = register_pipelines("test")
    again = register_pipelines("test")
    assert again["sensitivity"] is first["sensitivity"]  # not rebuilt
    grid = tmp_path / "conf/test/parameters.yml"
    text = grid.read_text()
    assert "lambda1: [0.0, 1.0]" in text
    grid.write_text(text.replace("lambda1: [0.0, 1.0]", "lambda1: [0.0, 0.5, 1.0]"))
    os.utime(grid, ns=(grid.stat().st_atime_ns, grid.stat().st_mtime_ns + 1_000_000))  # a coarse clock
    edited = register_pipelines("test")
    units = {n.namespace for n in edited["sensitivity"].nodes if "training" in n.tags}
    assert len(units) == len({n.namespace for n in first["sensitivity"].nodes if "training" in n.tags}) + 1
    assert edited["tune"] is not first["tune"]  # every pipeline of the new configuration is new
