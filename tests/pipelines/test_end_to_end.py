"""End to end through real Kedro sessions (``--env test``), with the data written to a scratch folder.

One smoke run of ``train_eval`` is shared by the module; tests that change what is on
disk work on their own copy of it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from dhat.checkpoints import load_classifier
from dhat.methods.catalog import namespaces
from tests.pipelines.memory import REPO

CORE = list(namespaces(["core", "oracle"]))


def _run(project: Path, env: str = "test", **run_kwargs):
    """``kedro run --env <env>`` (default ``test``) with the repository's conf/ and ``project`` as the data root."""
    bootstrap_project(REPO)
    params = run_kwargs.pop("params", None)
    try:
        with KedroSession.create(project_path=project, env=env, runtime_params=params,
                                 conf_source=str(REPO / "conf")) as session:
            return session.run(**run_kwargs)
    finally:
        # With the mlflow extra, kedro-mlflow can leave its run active in this process; a CLI run is one
        # process per `kedro run`, so end it here as the process end would.
        mlflow = sys.modules.get("mlflow")
        while mlflow is not None and mlflow.active_run() is not None:
            mlflow.end_run()


def _latest(path: Path) -> Path:
    """Newest version of a versioned dataset folder (Kedro's timestamps sort lexicographically)."""
    return sorted(p for p in path.iterdir() if p.is_dir())[-1] / path.name


def _scratch(root: Path) -> Path:
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    shutil.copy(REPO / ".telemetry", root / ".telemetry")
    (root / "src").mkdir(exist_ok=True)
    return root


@pytest.fixture(scope="module", autouse=True)
def mlflow_store(tmp_path_factory):
    """Where kedro-mlflow (if installed) records this module's runs: a scratch SQLite file, not the repository's data/."""
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    yield
    if previous is None:
        del os.environ["MLFLOW_TRACKING_URI"]
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous


@pytest.fixture(scope="module")
def project(tmp_path_factory, mlflow_store) -> Path:
    root = _scratch(tmp_path_factory.mktemp("dhat_project"))
    _run(root, pipeline_names=["train_eval"])
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
    transfer = pd.read_csv(_latest(project / "data/07_model_output/transfer/transfer_attacks.csv"))
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
        checkpoint = torch.load(_latest(project / f"data/06_models/{method}/model_best.pt"), weights_only=True)
        assert load_classifier(checkpoint)(torch.rand(2, 3, 16, 16)).shape == (2, 10)
        assert (project / f"data/07_model_output/{method}/attention_examples.npz").is_dir()


def test_one_namespace_rerun_is_reproducible(project, tmp_path):
    copy = shutil.copytree(project, tmp_path / "copy")
    first = json.loads(_latest(copy / "data/07_model_output/pgd_at/metrics.json").read_text())
    _run(copy, pipeline_names=["train_eval"], namespaces=["pgd_at"])
    versions = sorted((copy / "data/07_model_output/pgd_at/metrics.json").iterdir())
    assert len(versions) == 2
    second = json.loads(_latest(copy / "data/07_model_output/pgd_at/metrics.json").read_text())
    for key in ("best", "last", "robust_gap", "bias"):
        a, b = dict(first[key]), dict(second[key])
        a.pop("seconds", None), b.pop("seconds", None)
        assert a == b, key


def test_bf16_training_learns_and_is_evaluated_in_fp32(project, tmp_path):
    copy = shutil.copytree(project, tmp_path / "copy")
    _run(copy, pipeline_names=["train_eval"], namespaces=["natural"],
         params={"training": {"precision": "bf16", "epochs": 4}})
    history = pd.read_csv(_latest(copy / "data/07_model_output/natural/history.csv"))
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    checkpoint = torch.load(_latest(copy / "data/06_models/natural/model_best.pt"), weights_only=True)
    assert checkpoint["metadata"]["training"]["precision"] == "bf16"
    assert all(t.dtype == torch.float32 for t in checkpoint["state_dict"].values() if t.is_floating_point())
    metrics = json.loads(_latest(copy / "data/07_model_output/natural/metrics.json").read_text())
    assert metrics["evaluation"]["precision"] == "fp32"


def test_reporting_alone_aggregates_what_is_on_disk(project, tmp_path):
    copy = shutil.copytree(project, tmp_path / "copy")
    shutil.rmtree(copy / "data/07_model_output/uiat")
    _run(copy, pipeline_names=["reporting"])
    table = pd.read_csv(copy / "data/08_reporting/table1_robustness.csv")
    assert table["method"].tolist() == ["natural", "pgd_at", "dhat", "dhat_true_masks"]


def test_sensitivity_and_mask_sources_make_their_namespaces_from_yaml_and_reach_the_report(project, tmp_path,
                                                                                          monkeypatch):
    copy = shutil.copytree(project, tmp_path / "copy")
    monkeypatch.setenv("KEDRO_ENV", "test")  # the grid of conf/test decides the namespaces, as in a CLI run
    _run(copy, pipeline_names=["sensitivity"])
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
    scores = json.loads(_latest(copy / "data/07_model_output/sensitivity/lambda1/0/metrics.json").read_text())
    assert (scores["parameter"], scores["value"]) == ("lambda1", 0.0)
    checkpoint = torch.load(_latest(copy / "data/06_models/sensitivity/lambda1/0/model_best.pt"), weights_only=True)
    assert checkpoint["metadata"]["method"]["params"]["lambda1"] == 0.0
    _run(copy, pipeline_names=["mask_sources"])
    sources = pd.read_csv(copy / "data/08_reporting/mask_sources/mask_sources.csv").set_index("source")
    assert list(sources.index) == ["gradcam", "captum_gradcam", "integrated_gradients", "true"]
    assert sources.at["true", "iou_true_background"] == 1.0 and sources.at["true", "map_seconds"] == 0.0
    # captum's Grad-CAM gives the project's maps, so DHAT trains to the same model.
    assert sources.at["captum_gradcam", "clean - gradcam"] == 0.0 and sources.at["captum_gradcam", "pgd10 - gradcam"] == 0.0
    _run(copy, pipeline_names=["reporting"])
    report = (copy / "data/08_reporting/report.md").read_text()
    assert "## Sensitivity of DHAT" in report and "## DHAT with each mask source" in report


def test_bad_parameters_fail_before_any_work(tmp_path):
    project = _scratch(tmp_path)
    with pytest.raises(ValueError, match=r"data\.source='mnist'"):
        _run(project, pipeline_names=["train_eval"], params={"data": {"source": "mnist"}})
    assert not (project / "data").exists() or not any((project / "data").rglob("*.npz"))


def test_training_without_data_names_the_pipeline_to_run(tmp_path):
    with pytest.raises(Exception, match="data_ingestion"):
        _run(_scratch(tmp_path), pipeline_names=["training"], namespaces=["pgd_at"])


@pytest.mark.parametrize("method", namespaces(["baselines", "ablations", "mask_variants", "floe_variants"]))
def test_every_other_method_trains_and_evaluates_as_its_own_namespace(project, method):
    _run(project, pipeline_names=["train_eval_all"], namespaces=[method])
    metrics = json.loads(_latest(project / f"data/07_model_output/{method}/metrics.json").read_text())
    expected_weights = "FAWA weight average" if "cfa" in method else "trained model"
    assert metrics["checkpoint"]["weights"] == expected_weights  # CFA is evaluated as its averaged model
    # AutoAttack ran on a nested subset of 12 of the 24 evaluated images: robust there implies correct there.
    per_image = np.load(_latest(project / f"data/07_model_output/{method}/per_image.npz"))
    clean_there = per_image["clean"][np.searchsorted(per_image["positions"], per_image["autoattack_positions"])]
    assert per_image["autoattack"].shape == (12,) and metrics["evaluation"]["autoattack_n"] == 12
    assert not (per_image["autoattack"] & ~clean_there).any()
    checkpoint = torch.load(_latest(project / f"data/06_models/{method}/model_best.pt"), weights_only=True)
    assert load_classifier(checkpoint)(torch.rand(2, 3, 16, 16)).shape == (2, 10)


@pytest.fixture(scope="module")
def study_project(tmp_path_factory, mlflow_store) -> Path:
    """``kedro run --pipelines=study --env test`` in a scratch project (shared by the study's tests)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread per process, as a Dask worker has (test_dask_runner compares the two)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("KEDRO_ENV", "test")  # conf/test's seeds make the namespaces, as in a CLI run
            project = _scratch(tmp_path_factory.mktemp("dhat_study"))
            _run(project, pipeline_names=["study"])
    finally:
        torch.set_num_threads(threads)
    return project


def test_study_trains_every_seed_as_its_own_namespace_and_aggregates_them(study_project, monkeypatch):
    from dhat.pipelines.study.pipeline import STUDY_ABLATIONS
    from dhat.stats.study import StudySettings
    from tests.pipelines.memory import load_parameters

    monkeypatch.setenv("KEDRO_ENV", "test")
    STUDY_SEEDS = StudySettings.from_dict(load_parameters("test")["study"]).seeds
    assert len(STUDY_SEEDS) >= 2  # an interval over seeds needs two

    project = study_project
    table = pd.read_csv(project / "data/08_reporting/study_table.csv")
    assert table["method"].drop_duplicates().tolist() == CORE
    assert set(table["attack"]) == {"clean", "pgd5", "autoattack"} and (table["n_seeds"] == len(STUDY_SEEDS)).all()
    assert ((table["low"] <= table["mean"]) & (table["mean"] <= table["high"])).all()
    # Each seed's accuracy in the table is the one its own namespace's metrics report.
    for seed in STUDY_SEEDS:
        metrics = json.loads(_latest(project / f"data/07_model_output/study/seed{seed}/dhat/metrics.json").read_text())
        row = table[(table["method"] == "dhat") & (table["attack"] == "clean")].iloc[0]
        assert f"{metrics['best']['clean']:.1f}" == row["per_seed"].split()[STUDY_SEEDS.index(seed)]
    checkpoints = [torch.load(_latest(project / f"data/06_models/study/seed{s}/pgd_at/model_best.pt"), weights_only=True)
                   for s in STUDY_SEEDS]
    assert [c["metadata"]["training"]["seed"] for c in checkpoints] == list(STUDY_SEEDS)
    paired = pd.read_csv(project / "data/08_reporting/study_paired_differences.csv")
    assert {"DHAT - UIAT", "DHAT - PGD-AT"} <= set(paired["comparison"])
    assert "# Multi-seed study" in (project / "data/08_reporting/study.md").read_text()
    # The ablations reuse the study's data, masks and DHAT units, on the same seeds.
    _run(project, pipeline_names=["study_ablations"])
    ablations = pd.read_csv(project / "data/08_reporting/study_ablations_table.csv")
    assert set(ablations["method"]) == {"dhat", *STUDY_ABLATIONS}
    dhat_rows = ablations[ablations["method"] == "dhat"].reset_index(drop=True)
    assert dhat_rows["per_seed"].tolist() == table[table["method"] == "dhat"]["per_seed"].tolist()
    paired = pd.read_csv(project / "data/08_reporting/study_ablations_paired_differences.csv")
    assert set(paired["comparison"]) == {"DHAT - DHAT (mask omega 0.1)", "DHAT - DHAT (FLOE ref. code)"}


def test_the_results_notebook_runs_on_the_studys_outputs(study_project, monkeypatch):
    """notebooks/results.ipynb, executed as a user would on the test environment's study outputs."""
    import nbformat
    from nbclient import NotebookClient

    (study_project / "conf").symlink_to(REPO / "conf", target_is_directory=True)
    notebook = nbformat.read(REPO / "notebooks" / "results.ipynb", as_version=4)
    parameters = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    parameters.source = f"PROJECT = {str(study_project)!r}\nENV = 'test'"
    # The kernel is this interpreter ("python" on PATH is what the kernel spec starts). The runs of this
    # process set MPLBACKEND=Agg for their workers; a Jupyter server started by a user has not run one.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.delenv("MPLBACKEND", raising=False)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(study_project)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2  # the paired differences and the Grad-CAM
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "DHAT - PGD-AT, clean, per seed" in printed  # recomputed from the per-image records, equal to the table
    tables = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("DHAT - UIAT" in t for t in tables) and any("per_seed" in t for t in tables)


def _metrics(project: Path) -> dict[str, dict]:
    """Every unit's metrics (the newest version of each), by its path under 07_model_output."""
    root = project / "data/07_model_output"
    found = {}
    for folder in sorted(root.rglob("metrics.json")):
        if folder.is_dir():
            newest = sorted(p for p in folder.iterdir() if p.is_dir())[-1]
            found[str(folder.relative_to(root))] = json.loads((newest / "metrics.json").read_text())
    return found


def _timeless(value):
    """The metrics without wall-clock figures."""
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if "second" not in k and "time" not in k}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def test_the_study_on_two_dask_workers_gives_the_sequential_runs_metrics(study_project, tmp_path, monkeypatch):
    """``kedro run --runner=dhat.dask_runner.DaskRunner --pipelines=study`` on a local cluster of 2 worker processes.

    Same threads per process (one: the nanny's OMP_NUM_THREADS=1; the sequential fixture runs single-threaded)."""
    pytest.importorskip("distributed")
    from dhat.dask_runner import DaskRunner, DaskSettings

    monkeypatch.setenv("KEDRO_ENV", "test")
    project = _scratch(tmp_path)
    runner = DaskRunner(settings=DaskSettings(n_workers=2, threads_per_worker=1, dashboard_address=None))
    _run(project, pipeline_names=["study"], runner=runner)
    sequential, distributed = _metrics(study_project), _metrics(project)
    # Every unit of the study (the fixture's project may also hold the ablations' units, run by another test).
    assert len(distributed) >= 8 and set(distributed) <= set(sequential)
    for unit, metrics in distributed.items():
        assert _timeless(metrics) == _timeless(sequential[unit]), unit


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


def test_a_unit_whose_dask_worker_is_killed_after_its_second_epoch_resumes_to_the_uninterrupted_weights(
        tmp_path, monkeypatch, capfd):
    """SIGKILL of the worker process while it trains PGD-AT (3 epochs): Dask gives the node to the restarted worker,
    training resumes after epoch 2 from the state on disk, and the weights equal an uninterrupted run's."""
    pytest.importorskip("distributed")
    import signal
    import threading
    import time

    from distributed import Client, LocalCluster

    from dhat.dask_runner import DaskRunner, DaskSettings

    monkeypatch.setenv("KEDRO_ENV", "test")
    params = {"training": {"epochs": 3}}
    projects = {name: _scratch(tmp_path / name) for name in ("plain", "killed") if not (tmp_path / name).mkdir()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _run(projects["plain"], pipeline_names=["data_ingestion", "mask_precomputation"])
        shutil.copytree(projects["plain"] / "data", projects["killed"] / "data", dirs_exist_ok=True)  # the same inputs
        _run(projects["plain"], pipeline_names=["train_eval"], namespaces=["pgd_at"], params=params)
    finally:
        torch.set_num_threads(threads)
    state = projects["killed"] / "data/06_models/pgd_at/training_state.pt"
    killed: list[int] = []
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:

        def kill_after_epoch_two() -> None:
            deadline = time.monotonic() + 300
            while not killed and time.monotonic() < deadline:
                try:
                    done = state.is_file() and torch.load(state, weights_only=True)["epoch"] >= 2
                except Exception:  # noqa: BLE001 - a state being replaced: look again
                    done = False
                if done:
                    pid = next(iter(client.run(os.getpid).values()))
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                time.sleep(0.05)

        killer = threading.Thread(target=kill_after_epoch_two, daemon=True)
        killer.start()
        runner = DaskRunner(settings=DaskSettings(address=cluster.scheduler_address))
        _run(projects["killed"], pipeline_names=["train_eval"], namespaces=["pgd_at"], params=params, runner=runner)
        killer.join(timeout=5)
    assert killed, "the worker was never killed: the training state never reached epoch 2"
    printed = capfd.readouterr()
    assert "resuming after epoch 2 of 3" in printed.out + printed.err
    for name in ("model_best.pt", "model_last.pt"):
        plain, resumed = (torch.load(_latest(p / f"data/06_models/pgd_at/{name}"), weights_only=True)
                          for p in (projects["plain"], projects["killed"]))
        assert plain["metadata"]["epoch"] == resumed["metadata"]["epoch"]
        for key, value in plain["state_dict"].items():
            assert torch.equal(resumed["state_dict"][key], value), (name, key)


def test_the_studys_units_run_one_by_one_give_the_same_metrics_and_a_finished_unit_does_nothing(
        study_project, tmp_path, monkeypatch):
    """``python -m dhat.units run --pipeline study --unit I`` for every unit in stage order (as SLURM arrays would)."""
    from dhat.units import pipeline_units, run_unit

    monkeypatch.setenv("KEDRO_ENV", "test")
    project = _scratch(tmp_path)
    bootstrap_project(REPO)
    from kedro.framework.project import pipelines

    units = pipeline_units(pipelines["study"])
    stages = [u.stage for u in units]
    assert stages == sorted(stages) and stages[0] == 0 and max(stages) >= 2
    assert any(u.name == "study_seed1.dhat" for u in units) and all(u.nodes for u in units)
    # Every dependency points to an earlier stage: the units of one stage are independent.
    owner = {name: u for u in units for name in u.nodes}
    for node, parents in pipelines["study"].node_dependencies.items():
        for parent in parents:
            assert owner[parent.name] is owner[node.name] or owner[parent.name].stage < owner[node.name].stage
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for unit in units:
            assert run_unit(project, "study", unit=unit.index, env="test", conf_source=str(REPO / "conf"),
                            package_root=REPO)
        last = units[-1]
        assert run_unit(project, "study", stage=last.stage, task=0, env="test", conf_source=str(REPO / "conf"),
                        package_root=REPO) == []  # finished: nothing runs again
    finally:
        torch.set_num_threads(threads)
    sequential, by_unit = _metrics(study_project), _metrics(project)
    assert len(by_unit) >= 8 and set(by_unit) <= set(sequential)
    for unit, metrics in by_unit.items():
        assert _timeless(metrics) == _timeless(sequential[unit]), unit
