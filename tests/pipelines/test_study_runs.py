"""The study through real Kedro sessions (``--env test``): sequentially, on a local Dask cluster, unit by unit.

The sequential run is the reference: the Dask run (two worker processes, one thread each) and
the units run one by one (as SLURM array tasks would, ``python -m dhat.units``) must give its
metrics to the last digit. Every run here is single-threaded so that the three agree.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from kedro.framework.startup import bootstrap_project

from dhat.methods.catalog import namespaces
from tests.pipelines.memory import REPO
from tests.pipelines.sessions import latest, run_session, scratch, timeless, unit_metrics

CORE = list(namespaces(["core", "oracle"]))


@pytest.fixture(scope="module")
def study_project(tmp_path_factory) -> Path:
    """``kedro run --pipelines=study --env test`` in a scratch project (shared by the study's tests)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread per process, as a Dask worker has (the Dask tests below compare the two)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("KEDRO_ENV", "test")  # conf/test's seeds make the namespaces, as in a CLI run
            project = scratch(tmp_path_factory.mktemp("dhat_study"))
            run_session(project, pipeline_names=["study"])
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
        metrics = json.loads(latest(project / f"data/07_model_output/study/seed{seed}/dhat/metrics.json").read_text())
        row = table[(table["method"] == "dhat") & (table["attack"] == "clean")].iloc[0]
        assert f"{metrics['best']['clean']:.1f}" == row["per_seed"].split()[STUDY_SEEDS.index(seed)]
    checkpoints = [torch.load(latest(project / f"data/06_models/study/seed{s}/pgd_at/model_best.pt"), weights_only=True)
                   for s in STUDY_SEEDS]
    assert [c["metadata"]["training"]["seed"] for c in checkpoints] == list(STUDY_SEEDS)
    paired = pd.read_csv(project / "data/08_reporting/study_paired_differences.csv")
    assert {"DHAT - UIAT", "DHAT - PGD-AT"} <= set(paired["comparison"])
    assert "# Multi-seed study" in (project / "data/08_reporting/study.md").read_text()
    # The ablations reuse the study's data, masks and DHAT units, on the same seeds.
    run_session(project, pipeline_names=["study_ablations"])
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


def _copy_without(project: Path, target: Path, deleted) -> Path:
    """A copy of ``project`` without the data files for which ``deleted(parts of the path under data/)`` holds
    (and without the folders that leaves empty, such as a versioned dataset's)."""
    copy = shutil.copytree(project, target)
    for path in sorted((copy / "data").rglob("*"), reverse=True):  # a folder's contents before the folder
        if path.is_file() and deleted(path.relative_to(copy / "data").parts):
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return copy


@pytest.fixture(scope="module")
def dask_study(tmp_path_factory) -> Path:
    """``kedro run --runner=dhat.dask_runner.DaskRunner --pipelines=study`` on a local cluster of 2 worker processes,
    in a new project: the whole study, its units side by side on the two workers.

    Same threads per process as the sequential fixture: one (the nanny sets OMP_NUM_THREADS=1)."""
    pytest.importorskip("distributed")
    from dhat.dask_runner import DaskRunner, DaskSettings

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KEDRO_ENV", "test")
        project = scratch(tmp_path_factory.mktemp("dhat_dask_study"))
        runner = DaskRunner(settings=DaskSettings(n_workers=2, threads_per_worker=1, dashboard_address=None))
        run_session(project, pipeline_names=["study"], runner=runner)
    return project


def test_the_study_on_two_dask_workers_gives_the_sequential_runs_metrics(study_project, dask_study):
    sequential, distributed = unit_metrics(study_project), unit_metrics(dask_study)
    # Every unit of the study (the sequential project may also hold the ablations' units, run by another test).
    assert {unit.split("/")[2] for unit in distributed if unit.startswith("study/seed")} == set(CORE)
    assert len(distributed) >= 2 * len(CORE) and set(distributed) <= set(sequential)
    for unit, metrics in distributed.items():
        assert timeless(metrics) == timeless(sequential[unit]), unit
    for table in ("study_table.csv", "study_paired_differences.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(dask_study / "data/08_reporting" / table),
                                      pd.read_csv(study_project / "data/08_reporting" / table))


def test_the_studys_units_run_one_by_one_redo_what_is_missing_and_give_the_sequential_metrics(
        study_project, tmp_path, monkeypatch):
    """``python -m dhat.units run --pipeline study --unit I`` for every unit in stage order (as SLURM arrays would).

    On a copy of the sequential study with everything but seed 0's units deleted: the data, the masks, seed 1's
    units and the aggregates are made again, seed 0's units have finished and run nothing."""
    from dhat.units import pipeline_units, run_unit

    monkeypatch.setenv("KEDRO_ENV", "test")
    project = _copy_without(study_project, tmp_path / "units", lambda parts: "seed0" not in parts)
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
    ran = {}
    try:
        for unit in units:
            ran[unit.name] = run_unit(project, "study", unit=unit.index, env="test", conf_source=str(REPO / "conf"),
                                      package_root=REPO)
            # A session run from Python leaves no MLflow run open for the next one to log into.
            mlflow = sys.modules.get("mlflow")
            assert mlflow is None or mlflow.active_run() is None, unit.name
        last = units[-1]
        assert run_unit(project, "study", stage=last.stage, task=0, env="test", conf_source=str(REPO / "conf"),
                        package_root=REPO) == []  # finished: nothing runs again
    finally:
        torch.set_num_threads(threads)
    assert [name for name, nodes in ran.items() if not nodes] == [u.name for u in units
                                                                  if u.name.startswith("study_seed0.")]
    sequential, by_unit = unit_metrics(study_project), unit_metrics(project)
    rerun = {unit for unit in by_unit if unit.startswith("study/seed1/")}
    assert {unit.split("/")[2] for unit in rerun} >= set(CORE)
    for unit in rerun:
        assert timeless(by_unit[unit]) == timeless(sequential[unit]), unit
    pd.testing.assert_frame_equal(pd.read_csv(project / "data/08_reporting/study_table.csv"),
                                  pd.read_csv(study_project / "data/08_reporting/study_table.csv"))
