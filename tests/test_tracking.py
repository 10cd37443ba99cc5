"""MLflow tracking: what the hook logs, by hand; a no-op without the extra."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from dhat.tracking import MlflowTrackingHook, epoch_metrics, final_metrics, mlflow_runs_closed


def test_final_metrics_are_prefixed_by_namespace_and_keep_interval_bounds():
    metrics = {"best": {"clean": 80.0, "pgd50": 40.5, "n_images": 450, "attacks": ["pgd50"], "eps": 0.03,
                        "seconds": {"x": 1.0}, "flag": True},
               "intervals": {"clean": {"estimate": 80.0, "low": 76.0, "high": 84.0, "method": "bootstrap"}}}
    assert final_metrics("dhat", metrics) == {"dhat.clean": 80.0, "dhat.pgd50": 40.5, "dhat.n_images": 450.0,
                                              "dhat.eps": 0.03, "dhat.clean_low": 76.0, "dhat.clean_high": 84.0}
    sweep = {"accuracy": {"pgd20": {"estimate": 30.0, "low": 26.0, "high": 34.0}}}
    assert final_metrics("sensitivity__lambda1__0p5", sweep) == {
        "sensitivity__lambda1__0p5.pgd20": 30.0, "sensitivity__lambda1__0p5.pgd20_low": 26.0,
        "sensitivity__lambda1__0p5.pgd20_high": 34.0}


def test_epoch_metrics_take_every_numeric_cell_with_its_epoch():
    history = pd.DataFrame({"method": ["dhat", "dhat"], "epoch": [1, 2], "loss": [2.0, 1.5],
                            "val_pgd10": [math.nan, 30.0]})
    assert epoch_metrics("study_seed1.dhat", history) == [
        ("study_seed1.dhat.loss", 2.0, 1), ("study_seed1.dhat.loss", 1.5, 2), ("study_seed1.dhat.val_pgd10", 30.0, 2)]


def test_without_the_extra_or_a_run_the_hook_does_nothing():
    hook = MlflowTrackingHook()
    hook._available = False
    hook.after_node_run(node=None, outputs={"dhat.metrics": {"best": {"clean": 1.0}}})  # no MLflow touched
    assert hook._active() is None


def test_runs_left_active_by_a_session_are_ended_and_one_active_before_is_kept(tmp_path):
    """kedro-mlflow's pattern in one process: the run started, then reopened nested in before_node_run."""
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        client = mlflow.MlflowClient()
        experiment = client.create_experiment("closing")  # this store's own: not one a previous test made active
        with mlflow_runs_closed():
            run_id = mlflow.start_run(experiment_id=experiment).info.run_id
            mlflow.start_run(run_id=run_id, nested=True)
            mlflow.end_run()  # after_pipeline_run ends one of the two
            assert mlflow.active_run() is not None
        assert mlflow.active_run() is None and client.get_run(run_id).info.status == "FINISHED"
        outer = mlflow.start_run(experiment_id=experiment).info.run_id  # a run the caller opened stays open
        with mlflow_runs_closed():
            mlflow.start_run(experiment_id=experiment, nested=True)
        assert mlflow.active_run().info.run_id == outer
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(previous)
