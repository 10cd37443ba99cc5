"""Pipelines on tiny data through real Kedro sessions (``conf/test``), in a scratch copy of the project.

One end-to-end smoke run of ``train_eval`` is shared by the module; the other
tests reuse its outputs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from kedro.framework.project import pipelines
from kedro.framework.startup import bootstrap_project

from dhat.session import DhatSession

REPO = Path(__file__).resolve().parents[2]
DEFAULT_METHODS = ["natural", "pgd_at", "uiat", "dhat"]


def _make_project(root: Path) -> Path:
    shutil.copytree(REPO / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()  # Kedro checks the source folder exists; the package itself is installed
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    shutil.copy(REPO / ".telemetry", root / ".telemetry")
    return root


def _run(project: Path, **run_kwargs):
    bootstrap_project(project)
    extra_params = run_kwargs.pop("extra_params", None)
    with DhatSession.create(project_path=project, env="test", runtime_params=extra_params) as session:
        return session.run(**run_kwargs)


def _latest(path: Path) -> Path:
    """Newest version of a versioned dataset folder (Kedro's timestamps sort lexicographically)."""
    return sorted(p for p in path.iterdir() if p.is_dir())[-1] / path.name


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = _make_project(tmp_path_factory.mktemp("dhat_project"))
    _run(root, pipeline_names=["train_eval"])
    return root


def test_train_eval_smoke_run_writes_every_output(project):
    reporting = project / "data" / "08_reporting"
    report = (reporting / "report.md").read_text()
    table = pd.read_csv(reporting / "table1_robustness.csv")
    assert table["method"].tolist() == DEFAULT_METHODS  # paper order, natural first
    assert {"Clean", "PGD-2", "PGD-5", "CW", "AA", "Robust Gap"} <= set(table.columns)
    assert table["Clean"].between(0, 100).all() and table["AA"].between(0, 100).all()
    assert "fixed subset of 24 of the 450 test images" in report
    assert "reduced" in report  # the tiny AutoAttack is labelled as such
    for figure in ("learning_curves.png", "gradcam_attention.png"):
        assert (reporting / figure).stat().st_size > 1000
    bias = pd.read_csv(reporting / "background_bias.csv")
    assert {"acc_test", "acc_test_aligned", "cam_iou_test", "aligned_minus_random"} <= set(bias.columns)
    quality = json.loads((project / "data/07_model_output/mask_model/mask_quality.json").read_text())
    assert 0.0 <= quality["iou_true_foreground@0.1"] <= 1.0
    transfer = pd.read_csv(_latest(project / "data/07_model_output/transfer/transfer_attacks.csv"))
    assert set(transfer["source"]) == set(DEFAULT_METHODS)


def test_metrics_hold_protocol_details_and_sanity_checks(project):
    metrics = json.loads(_latest(project / "data/07_model_output/dhat/metrics.json").read_text())
    assert metrics["evaluation"]["subset"] is True and metrics["evaluation"]["n_eval"] == 24
    assert metrics["checkpoint"]["selected_on"] == "val_pgd10"
    assert {c["name"] for c in metrics["sanity_checks"]} == {"pgd_beats_fgsm", "accuracy_vanishes_with_eps", "white_box_beats_square"}
    best = metrics["best"]
    assert best["worst_case"] <= min(best[k] for k in ("clean", "fgsm", "pgd5", "cw", "autoattack"))
    assert "pgd2" in metrics["robust_gap"] and metrics["robust_gap"]["n_images"] == 16
    assert len(metrics["attention_examples"]["maps"]) == 3
    # Every background variant is scored on the same test digits as the attacks.
    assert {v["n_images"] for v in metrics["bias_detail"]["variants"].values()} == {24}
    assert metrics["bias"]["acc_test"] == best["clean"]


def test_checkpoints_load_with_weights_only_and_rebuild_the_model(project):
    from dhat.checkpoints import load_classifier

    path = _latest(project / "data/06_models/dhat/model_best.pt")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert checkpoint["metadata"]["method"]["name"] == "dhat"
    model = load_classifier(checkpoint)
    assert model(torch.rand(2, 3, 16, 16)).shape == (2, 10)


def test_one_namespace_rerun_is_reproducible(project):
    first = json.loads(_latest(project / "data/07_model_output/pgd_at/metrics.json").read_text())
    _run(project, pipeline_names=["train_eval"], namespaces=["pgd_at"])
    versions = sorted((project / "data/07_model_output/pgd_at/metrics.json").iterdir())
    assert len(versions) == 2
    second = json.loads(_latest(project / "data/07_model_output/pgd_at/metrics.json").read_text())
    for key in ("best", "last", "robust_gap", "bias"):
        a, b = dict(first[key]), dict(second[key])
        a.pop("seconds", None), b.pop("seconds", None)
        assert a == b, key


def test_reporting_alone_aggregates_what_is_on_disk(project):
    shutil.rmtree(project / "data/07_model_output/uiat")
    _run(project, pipeline_names=["reporting"])
    table = pd.read_csv(project / "data/08_reporting/table1_robustness.csv")
    assert table["method"].tolist() == ["natural", "pgd_at", "dhat"]


@pytest.mark.parametrize(
    ("extra_params", "message"),
    [
        ({"dhat": {"method": {"name": "dhat_plus"}}}, "method.name='dhat_plus'"),
        ({"pgd_at": {"method": {"params": {"attack": {"eps": -0.1}}}}}, "pgd_at.method.params.attack.eps must be >= 0"),
        ({"training": {"epochs": 0}}, "training.epochs"),
        ({"evaluation": {"suite": {"eps": -1}}}, "evaluation.suite.eps"),
        ({"data": {"source": "mnist"}}, "data.source='mnist'"),
    ],
)
def test_bad_parameters_fail_before_any_work(tmp_path, extra_params, message):
    project = _make_project(tmp_path)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        _run(project, pipeline_names=["train_eval"], extra_params=extra_params)
    assert not any((project / "data").rglob("*.npz"))  # not even data ingestion ran


def test_training_without_data_names_the_pipeline_to_run(tmp_path):
    project = _make_project(tmp_path)
    with pytest.raises(Exception, match="data_ingestion"):
        _run(project, pipeline_names=["training"], namespaces=["pgd_at"])


def test_registry_has_every_stage_and_the_composites():
    bootstrap_project(REPO)
    names = set(pipelines)
    assert {"data_ingestion", "mask_precomputation", "training", "evaluation", "transfer", "reporting", "train_eval",
            "train_eval_baselines", "train_eval_ablations", "train_eval_all"} <= names
    namespaces = {n.namespace for n in pipelines["train_eval"].nodes if n.namespace}
    assert namespaces == set(DEFAULT_METHODS)


def test_train_eval_methods_follow_the_environment_and_namespaces(tmp_path):
    from dhat.pipelines.methods import ALL_METHODS

    project = _make_project(tmp_path)
    # The environment's list decides what train_eval trains...
    _run(project, pipeline_names=["train_eval"], extra_params={"train_eval": {"methods": ["natural", "trades"]}})
    evaluated = {p.name for p in (project / "data/07_model_output").iterdir() if (p / "metrics.json").exists()}
    assert evaluated == {"natural", "trades"}
    # ... and --namespaces runs any configured method, listed or not.
    _run(project, pipeline_names=["train_eval"], namespaces=["mart"])
    assert (project / "data/07_model_output/mart/metrics.json").exists()
    bootstrap_project(REPO)
    configured = {m for m in ALL_METHODS}
    assert {"trades", "mart", "pgd_at_awp", "trades_awp", "fsr", "cfa", "cfa_trades", "sglr", "dhat_awp", "dhat_cfa"} <= configured


BASELINES = ["trades", "mart", "pgd_at_awp", "trades_awp", "fsr", "cfa", "cfa_trades", "sglr", "dhat_awp", "dhat_cfa"]


@pytest.mark.parametrize("method", BASELINES)
def test_each_baseline_trains_and_evaluates_as_its_own_namespace(project, method):
    from dhat.checkpoints import load_classifier

    _run(project, pipeline_names=["train_eval"], namespaces=[method])
    metrics = json.loads(_latest(project / f"data/07_model_output/{method}/metrics.json").read_text())
    assert metrics["method_config"]["name"] == method
    expected_weights = "FAWA weight average" if "cfa" in method else "trained model"
    assert metrics["checkpoint"]["weights"] == expected_weights  # CFA is evaluated as its averaged model
    assert 0 <= metrics["best"]["autoattack"] <= metrics["best"]["clean"] <= 100
    checkpoint = torch.load(_latest(project / f"data/06_models/{method}/model_best.pt"), map_location="cpu", weights_only=True)
    assert load_classifier(checkpoint)(torch.rand(2, 3, 16, 16)).shape == (2, 10)


def test_report_lists_methods_in_the_paper_order(project):
    _run(project, pipeline_names=["reporting"])
    table = pd.read_csv(project / "data/08_reporting/table1_robustness.csv")
    evaluated = table["method"].tolist()
    expected = ["natural", "pgd_at", "trades", "mart", "pgd_at_awp", "trades_awp", "fsr", "cfa", "cfa_trades", "sglr", "dhat", "dhat_awp", "dhat_cfa"]
    assert [m for m in evaluated if m in expected] == [m for m in expected if m in evaluated]
    assert set(BASELINES) <= set(evaluated)
