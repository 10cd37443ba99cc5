"""End to end through real Kedro sessions (``--env test``), with the data written to a scratch folder.

One smoke run of ``train_eval`` is shared by the module; tests that change what is on
disk work on their own copy of it. The study's sessions are in test_study_runs.py.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dhat.checkpoints import load_classifier
from dhat.methods.catalog import namespaces
from tests.pipelines.sessions import latest, run_session, scratch

CORE = list(namespaces(["core", "oracle"]))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = scratch(tmp_path_factory.mktemp("dhat_project"))
    run_session(root, pipeline_names=["train_eval"])
    return root


def test_train_eval_smoke_run_writes_every_output(project):
    reporting = project / "data" / "08_reporting"
    report = (reporting / "report.md").read_text()
    table = pd.read_csv(reporting / "table1_robustness.csv")
    assert table["method"].tolist() == CORE  # catalog (paper) order, natural first
    assert {"Clean", "PGD-2", "PGD-5", "CW", "AA", "Robust Gap"} <= set(table.columns)
    assert table["Clean"].between(0, 100).all() and table["AA"].between(0, 100).all()
    assert "fixed subset of 24 of the 450 test images" in report and "reduced" in report
    for figure in ("learning_curves.png", "gradcam_attention.png"):
        assert (reporting / figure).stat().st_size > 1000
    transfer = pd.read_csv(latest(project / "data/07_model_output/transfer/transfer_attacks.csv"))
    assert set(transfer["source"]) == set(CORE)
    paired = pd.read_csv(reporting / "paired_differences.csv")
    assert {"DHAT - UIAT", "DHAT - PGD-AT", "DHAT (true masks) - DHAT"} <= set(paired["comparison"])
    assert ((paired["low"] <= paired["difference"]) & (paired["difference"] <= paired["high"])).all()
    assert "## DHAT's background masks" in report and "## Paired differences" in report
    # The analyses of every method: attention under +-eps, robustness against the radius, training cost.
    attention = pd.read_csv(reporting / "attention_shift.csv")
    assert set(attention["method"]) == set(CORE) and sorted(set(attention["radius_255"])) == [-8, -4, 0, 4, 8]
    radius = pd.read_csv(reporting / "robustness_vs_eps.csv")
    assert set(radius["attack"]) == {"clean", "fgsm", "pgd10"} and set(radius["method"]) == set(CORE)
    cost = pd.read_csv(reporting / "compute_cost.csv").set_index("method")
    assert list(cost.index) == CORE and cost.at["pgd_at", "ratio_to_pgd_at"] == 1.0
    assert (cost["epochs"] == 2).all() and cost["device"].str.startswith("cpu").all()
    for section in ("## Attention under inverse", "## Robustness against the attack radius", "## Training cost"):
        assert section in report
    for figure in ("attention_shift.png", "robustness_vs_eps.png"):
        assert (reporting / figure).stat().st_size > 1000
    # The resumable training states are gone once every training node's outputs were saved.
    assert not list(project.glob("data/06_models/**/training_state.pt"))
    for method in CORE:
        checkpoint = torch.load(latest(project / f"data/06_models/{method}/model_best.pt"), weights_only=True)
        assert load_classifier(checkpoint)(torch.rand(2, 3, 16, 16)).shape == (2, 10)
        assert (project / f"data/07_model_output/{method}/attention_examples.npz").is_dir()


def test_one_namespace_rerun_is_reproducible(project, tmp_path):
    copy = shutil.copytree(project, tmp_path / "copy")
    first = json.loads(latest(copy / "data/07_model_output/pgd_at/metrics.json").read_text())
    run_session(copy, pipeline_names=["train_eval"], namespaces=["pgd_at"])
    versions = sorted((copy / "data/07_model_output/pgd_at/metrics.json").iterdir())
    assert len(versions) == 2
    second = json.loads(latest(copy / "data/07_model_output/pgd_at/metrics.json").read_text())
    for key in ("best", "last", "robust_gap", "bias"):
        a, b = dict(first[key]), dict(second[key])
        a.pop("seconds", None), b.pop("seconds", None)
        assert a == b, key


def test_bf16_training_learns_and_is_evaluated_in_fp32(project, tmp_path):
    copy = shutil.copytree(project, tmp_path / "copy")
    run_session(copy, pipeline_names=["train_eval"], namespaces=["natural"],
         params={"training": {"precision": "bf16", "epochs": 4}})
    history = pd.read_csv(latest(copy / "data/07_model_output/natural/history.csv"))
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    checkpoint = torch.load(latest(copy / "data/06_models/natural/model_best.pt"), weights_only=True)
    assert checkpoint["metadata"]["training"]["precision"] == "bf16"
    assert all(t.dtype == torch.float32 for t in checkpoint["state_dict"].values() if t.is_floating_point())
    metrics = json.loads(latest(copy / "data/07_model_output/natural/metrics.json").read_text())
    assert metrics["evaluation"]["precision"] == "fp32"


def test_reporting_alone_aggregates_what_is_on_disk(project, tmp_path):
    copy = shutil.copytree(project, tmp_path / "copy")
    shutil.rmtree(copy / "data/07_model_output/uiat")
    run_session(copy, pipeline_names=["reporting"])
    table = pd.read_csv(copy / "data/08_reporting/table1_robustness.csv")
    assert table["method"].tolist() == ["natural", "pgd_at", "dhat", "dhat_true_masks"]


def test_sensitivity_and_mask_sources_make_their_namespaces_from_yaml_and_reach_the_report(project, tmp_path,
                                                                                          monkeypatch):
    copy = shutil.copytree(project, tmp_path / "copy")
    monkeypatch.setenv("KEDRO_ENV", "test")  # the grid of conf/test decides the namespaces, as in a CLI run
    run_session(copy, pipeline_names=["sensitivity"])
    folder = copy / "data/08_reporting/sensitivity"
    summary = pd.read_csv(folder / "sensitivity.csv")
    # conf/test: lambda1 in {0, 1}, lambda2 and background_share one value each; clean and PGD-10 per run.
    assert sorted(summary.groupby("parameter")["value"].nunique().items()) == [
        ("background_share", 1), ("lambda1", 2), ("lambda2", 1)]
    # The sweep scores the evaluation's own fixed subset (conf/test: evaluation.n_eval 24 of the 450 test images).
    assert set(summary["attack"]) == {"clean", "pgd10"} and (summary["n_images"] == 24).all()
    for parameter in ("lambda1", "lambda2", "background_share"):
        assert (folder / f"sensitivity_{parameter}.png").stat().st_size > 1000
        assert (folder / f"sensitivity_{parameter}.csv").exists()
    scores = json.loads(latest(copy / "data/07_model_output/sensitivity/lambda1/0/metrics.json").read_text())
    assert (scores["parameter"], scores["value"]) == ("lambda1", 0.0)
    checkpoint = torch.load(latest(copy / "data/06_models/sensitivity/lambda1/0/model_best.pt"), weights_only=True)
    assert checkpoint["metadata"]["method"]["params"]["lambda1"] == 0.0
    run_session(copy, pipeline_names=["mask_sources"])
    sources = pd.read_csv(copy / "data/08_reporting/mask_sources/mask_sources.csv").set_index("source")
    assert list(sources.index) == ["gradcam", "captum_gradcam", "integrated_gradients", "true"]
    assert sources.at["true", "iou_true_background"] == 1.0 and sources.at["true", "map_seconds"] == 0.0
    # captum's Grad-CAM gives the project's maps, so DHAT trains to the same model.
    assert sources.at["captum_gradcam", "clean - gradcam"] == 0.0 and sources.at["captum_gradcam", "pgd10 - gradcam"] == 0.0
    run_session(copy, pipeline_names=["reporting"])
    report = (copy / "data/08_reporting/report.md").read_text()
    assert "## Sensitivity of DHAT" in report and "## DHAT with each mask source" in report


def test_bad_parameters_fail_before_any_work(tmp_path):
    project = scratch(tmp_path)
    with pytest.raises(ValueError, match=r"data\.source='mnist'"):
        run_session(project, pipeline_names=["train_eval"], params={"data": {"source": "mnist"}})
    assert not (project / "data").exists() or not any((project / "data").rglob("*.npz"))


def test_training_without_data_names_the_pipeline_to_run(tmp_path):
    with pytest.raises(Exception, match="data_ingestion"):
        run_session(scratch(tmp_path), pipeline_names=["training"], namespaces=["pgd_at"])


OTHERS = namespaces(["baselines", "ablations", "mask_variants", "floe_variants"])


@pytest.fixture(scope="module")
def others(project) -> Path:
    """``kedro run --pipelines=train_eval_all --namespaces=<every other method>``: one session for all of them."""
    run_session(project, pipeline_names=["train_eval_all"], namespaces=list(OTHERS))
    return project


@pytest.mark.parametrize("method", OTHERS)
def test_every_other_method_trains_and_evaluates_as_its_own_namespace(others, method):
    project = others
    metrics = json.loads(latest(project / f"data/07_model_output/{method}/metrics.json").read_text())
    expected_weights = "FAWA weight average" if "cfa" in method else "trained model"
    assert metrics["checkpoint"]["weights"] == expected_weights  # CFA is evaluated as its averaged model
    # AutoAttack ran on a nested subset of 12 of the 24 evaluated images: robust there implies correct there.
    per_image = np.load(latest(project / f"data/07_model_output/{method}/per_image.npz"))
    clean_there = per_image["clean"][np.searchsorted(per_image["positions"], per_image["autoattack_positions"])]
    assert per_image["autoattack"].shape == (12,) and metrics["evaluation"]["autoattack_n"] == 12
    assert not (per_image["autoattack"] & ~clean_there).any()
    checkpoint = torch.load(latest(project / f"data/06_models/{method}/model_best.pt"), weights_only=True)
    assert load_classifier(checkpoint)(torch.rand(2, 3, 16, 16)).shape == (2, 10)



def test_with_the_mlflow_extra_each_run_is_one_mlflow_run_with_every_methods_metrics(project):
    """``pip install -e ".[mlflow]"``: kedro-mlflow's run of the module's train_eval (MLFLOW_TRACKING_URI set above)."""
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    pytest.importorskip("kedro_mlflow", reason="the mlflow extra is not installed")
    client = mlflow.MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("dhat")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    run = runs[0]  # the module's first session: the full train_eval (later tests run parts of it again)
    assert run.info.run_name == "train_eval" and run.info.status == "FINISHED"
    for method in CORE:
        for metric in ("clean", "pgd5", "autoattack", "clean_low"):
            assert f"{method}.{metric}" in run.data.metrics, (method, metric)
        assert len(client.get_metric_history(run.info.run_id, f"{method}.loss")) == 2  # one point per epoch
    assert run.data.params["dhat.method.params.lambda1"] == "1.0"  # kedro-mlflow's parameters, flattened
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/report.md", "report/attention_shift_figure.png", "report/results_table.csv"} <= artifacts

