"""The ``tune`` and ``tune_test`` pipelines: no test image reaches the search, budgets are equal, runs resume."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pandas as pd
import pytest

from dhat.data import registry
from dhat.pipeline_registry import planned_units, register_pipelines
from dhat.pipelines import tune
from dhat.tuning import TuneSettings
from tests.pipelines.memory import kedro_env, load_parameters, run_pipeline
from tests.pipelines.sessions import run_session, scratch


def _small(params):
    small = {**params["tune"], "methods": ["pgd_at"], "protocols": ["decorrelated"], "n_trials": 2,
             "rescore": {"top_k": 2, "seeds": [101]}}
    return {**params, "tune": small}


def test_no_node_of_the_search_reads_the_test_split():
    pipelines = register_pipelines("test")
    searched = [n for n in pipelines["tune"].nodes if n.name != "ingest_data"]
    assert searched and all(not {"test_set", "test_variants"} & set(n.inputs) for n in searched)
    # tune_test reads the test split only in its evaluation nodes, never where it trains
    training = [n for n in pipelines["tune_test"].nodes if "training" in n.tags]
    assert training and all(not {"test_set", "test_variants"} & set(n.inputs) for n in training)


def _tune(params, tmp_path):
    settings = TuneSettings.from_dict(params["tune"])
    constants = {"tune_storage": str(tmp_path / "optuna.db"),
                 "tune_decorrelated.pgd_at.unit": "decorrelated.pgd_at"}  # what the catalog's pattern gives
    search = tune.create_pipeline(settings).only_nodes_with_tags("data_ingestion", "mask_precomputation", "training")
    catalog = run_pipeline(search, params, **constants)
    return catalog.load("tune_decorrelated.pgd_at.trials"), catalog.load("tune_decorrelated.pgd_at.chosen"), catalog


def test_poisoning_the_test_split_changes_nothing_the_search_sees(tmp_path, monkeypatch):
    params = _small(load_parameters("test"))
    trials, chosen, clean_catalog = _tune(params, tmp_path / "clean")
    generate = registry.make_digit_texture_benchmark

    def poisoned(**kwargs):
        sets = generate(**kwargs)
        rng = np.random.default_rng(1)
        for name in [n for n in sets if n.startswith("test")]:
            sets[name] = {**sets[name], "images": rng.integers(0, 256, sets[name]["images"].shape, dtype=np.uint8),
                          "labels": rng.permutation(sets[name]["labels"])}
        return sets

    monkeypatch.setattr(registry, "make_digit_texture_benchmark", poisoned)
    again, chosen_again, catalog = _tune(params, tmp_path / "poisoned")
    assert not np.array_equal(catalog.load("test_set")["images"], clean_catalog.load("test_set")["images"])
    assert again["value"].tolist() == trials["value"].tolist()
    assert again.filter(like="param:").equals(trials.filter(like="param:"))
    assert chosen_again["values"] == chosen["values"] and chosen_again["rescored"] == chosen["rescored"]


def test_the_decorrelated_protocol_is_left_out_where_the_data_has_no_such_split():
    params = load_parameters("test")
    params = {**params, "tune": {**params["tune"], "protocols": ["standard", "decorrelated"]}}
    assert planned_units(params)["tune"][0] == ("standard", "decorrelated")
    cifar = {**params, "data": {**params["data"], "source": "cifar10"}}
    kept, left_out = planned_units(cifar)["tune"]
    assert kept == ("standard",) and "decorrelated" in left_out


@pytest.fixture(scope="module")
def test_env():
    with kedro_env("test"):
        yield


@pytest.fixture(scope="module")
def tuned_project(tmp_path_factory, test_env):
    root = scratch(tmp_path_factory.mktemp("dhat_tune"))
    run_session(root, pipeline_names=["tune"])
    run_session(root, pipeline_names=["tune_test"])
    return root


def test_tune_then_tune_test_end_to_end_with_equal_budgets(tuned_project):
    settings = TuneSettings.from_dict(load_parameters("test")["tune"])
    out = tuned_project / "data" / "07_model_output" / "tuning"
    for protocol in settings.protocols:
        budgets = set()
        for method in settings.methods:
            chosen = json.loads((out / protocol / method / "chosen.json").read_text())
            check = json.loads((out / protocol / method / "check.json").read_text())
            budgets.add(sum(t["counted"] for t in chosen["trials"]))
            assert chosen["n_trials"] == settings.n_trials and chosen["completed_trials"] >= settings.n_trials
            assert check["trial_value"] == pytest.approx(check["value"])  # the winner retrains to its trial's score
            assert "autoattack" in check and {c["name"] for c in check["sanity_checks"]} >= {"pgd_beats_fgsm"}
        assert budgets == {settings.n_trials}
        reporting = tuned_project / "data" / "08_reporting" / "tuning" / protocol
        assert {"progress.png", "tradeoff.png", "chosen.csv", "test_table.csv",
                "test_paired_differences.csv"} <= {p.name for p in reporting.iterdir()}
        table = pd.read_csv(reporting / "test_table.csv")
        assert set(table["method"]) == {*settings.methods, *settings.baselines}
        assert set(table["n_seeds"]) == {len(settings.test_seeds)}
        paired = pd.read_csv(reporting / "test_paired_differences.csv")
        assert set(paired["comparison"]) == {"DHAT - PGD-AT", "DHAT - DHAT (paper settings)"}
    report = (tuned_project / "data" / "08_reporting" / "tuning" / "tuning.md").read_text()
    assert "Protocol 'standard'" in report and "No test image" in report


def test_rerunning_tune_adds_no_trial_and_keeps_the_choice(tuned_project):
    database = tuned_project / "data" / "06_models" / "tuning" / "optuna.db"
    count = "SELECT COUNT(*) FROM trials"
    before = sqlite3.connect(database).execute(count).fetchone()[0]
    chosen_file = tuned_project / "data" / "07_model_output" / "tuning" / "standard" / "dhat" / "chosen.json"
    chosen = json.loads(chosen_file.read_text())
    run_session(tuned_project, pipeline_names=["tune"], node_names=["tune_standard.dhat.search", "tune_standard.dhat.choose"])
    assert sqlite3.connect(database).execute(count).fetchone()[0] == before
    assert json.loads(chosen_file.read_text())["values"] == chosen["values"]


def test_the_tuning_settings_in_the_test_environment_shape_the_pipelines():
    settings = TuneSettings.from_dict(load_parameters("test")["tune"])
    pipelines = register_pipelines("test")
    names = {n.name for n in pipelines["tune_test"].nodes}
    expected = {f"fresh_{p}_seed{s}.{m}.train" for p in settings.protocols for s in settings.test_seeds
                for m in settings.methods} | {f"fresh_untuned_seed{s}.{b}.train" for s in settings.test_seeds
                                              for b in settings.baselines}
    assert expected <= names


def test_a_carried_search_continues_elsewhere_and_refuses_other_masks(tuned_project, tmp_path_factory):
    """docs/tuning.md 'Carrying a search': the journal and the inputs go to a fresh project; the tune namespaces
    run there without remaking the data or the masks. Masks made anew (another machine) are refused for DHAT."""
    import shutil  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from tests.pipelines.memory import REPO  # noqa: PLC0415

    data = tuned_project / "data"
    target = scratch(tmp_path_factory.mktemp("dhat_carried"))
    journal = target / "search.journal"
    for source, dest in [(data / "06_models/tuning/optuna.db", journal),
                         (journal, target / "data/06_models/tuning/optuna.db")]:
        subprocess.run([sys.executable, str(REPO / "scripts/tuning_journal.py"), str(source), str(dest)],
                       check=True, capture_output=True, timeout=120)
    for inputs in ["04_feature", "05_model_input"]:
        shutil.copytree(data / inputs, target / "data" / inputs)
    masks = target / "data/04_feature/attention_masks.npz"
    carried, written = masks.read_bytes(), masks.stat().st_mtime_ns
    count = "SELECT COUNT(*) FROM trials"
    before = sqlite3.connect(data / "06_models/tuning/optuna.db").execute(count).fetchone()[0]
    run_session(target, namespaces=["tune_standard"], pipeline_names=["tune"])
    assert masks.read_bytes() == carried and masks.stat().st_mtime_ns == written  # --namespaces left the mask nodes out
    assert not (target / "data/06_models/mask_model").exists()
    assert sqlite3.connect(target / "data/06_models/tuning/optuna.db").execute(count).fetchone()[0] == before
    chosen = "07_model_output/tuning/standard/dhat/chosen.json"
    assert json.loads((target / "data" / chosen).read_text())["values"] == json.loads((data / chosen).read_text())["values"]
    # other masks: DHAT's study says which input changed; PGD-AT's, which never reads them, goes on
    with np.load(masks, allow_pickle=False) as stored:
        arrays = dict(stored)
    arrays["masks"] = 255 - arrays["masks"]
    np.savez(masks, **arrays)
    run_session(target, pipeline_names=["tune"], node_names=["tune_standard.pgd_at.search"])
    with pytest.raises(ValueError, match=r"another data \(attention_masks\)"):
        run_session(target, pipeline_names=["tune"], node_names=["tune_standard.dhat.search"])
