"""The Dask runner (dhat.dask_runner): its checks, a failing node, processes started on its workers, a killed worker
(the study on a cluster: test_study_runs)."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline

from dhat.dask_runner import DaskRunner, DaskSettings, memory_datasets_between_nodes
from tests.pipelines.sessions import latest, run_session, scratch


def test_a_dataset_passed_in_memory_between_nodes_is_refused_by_name():
    pipeline = Pipeline([Node(lambda x: x + 1, "params:start", "middle", name="first"),
                         Node(lambda y: y * 2, "middle", "end", name="second")])
    catalog = DataCatalog({"params:start": MemoryDataset(1), "middle": MemoryDataset(), "end": MemoryDataset()})
    assert memory_datasets_between_nodes(pipeline, catalog) == ["middle"]
    with pytest.raises(ValueError, match="DaskRunner: middle passes between nodes in memory"):
        DaskRunner(settings={"n_workers": 1}).run(pipeline, catalog)


def test_the_dask_section_is_checked_by_name():
    assert DaskSettings.from_dict(None) == DaskSettings()
    with pytest.raises(ValueError, match="dask.cluster must be one of local, cuda"):
        DaskSettings.from_dict({"cluster": "slurm"})
    with pytest.raises(ValueError, match="dask.n_workers must be a positive integer or null"):
        DaskSettings.from_dict({"n_workers": 0})


def _fails(value):
    raise ValueError(f"training.lr must be > 0, got {value}")


def test_a_node_that_raises_stops_the_run_with_its_own_error_and_is_not_retried(tmp_path):
    pytest.importorskip("distributed")
    calls = tmp_path / "calls"

    def counted(value):
        with calls.open("a") as handle:
            handle.write("x")
        return _fails(value)

    pipeline = Pipeline([Node(counted, "params:lr", "never", name="bad_node")])
    catalog = DataCatalog({"params:lr": MemoryDataset(-1)})
    runner = DaskRunner(settings={"n_workers": 1, "dashboard_address": None})
    with pytest.raises(ValueError, match="training.lr must be > 0, got -1"):
        runner.run(pipeline, catalog)
    assert calls.read_text() == "x"  # one attempt


def test_a_unit_whose_dask_worker_is_killed_after_its_second_epoch_resumes_to_the_uninterrupted_weights(
        tmp_path, monkeypatch, capfd):
    """SIGKILL of the worker process while it trains PGD-AT (3 epochs): Dask gives the node to the restarted worker,
    training resumes after epoch 2 from the state on disk, and the weights equal an uninterrupted run's."""
    pytest.importorskip("distributed")
    import signal
    import threading
    import time

    from distributed import Client, LocalCluster


    monkeypatch.setenv("KEDRO_ENV", "test")
    params = {"training": {"epochs": 3}}
    projects = {name: scratch(tmp_path / name) for name in ("plain", "killed") if not (tmp_path / name).mkdir()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_session(projects["plain"], pipeline_names=["data_ingestion", "mask_precomputation"])
        shutil.copytree(projects["plain"] / "data", projects["killed"] / "data", dirs_exist_ok=True)  # same data
        run_session(projects["plain"], pipeline_names=["train_eval"], namespaces=["pgd_at"], params=params)
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
        run_session(projects["killed"], pipeline_names=["train_eval"], namespaces=["pgd_at"], params=params, runner=runner)
        killer.join(timeout=5)
    assert killed, "the worker was never killed: the training state never reached epoch 2"
    printed = capfd.readouterr()
    assert "resuming after epoch 2 of 3" in printed.out + printed.err
    for name in ("model_best.pt", "model_last.pt"):
        plain, resumed = (torch.load(latest(p / f"data/06_models/pgd_at/{name}"), weights_only=True)
                          for p in (projects["plain"], projects["killed"]))
        assert plain["metadata"]["epoch"] == resumed["metadata"]["epoch"]
        for key, value in plain["state_dict"].items():
            assert torch.equal(resumed["state_dict"][key], value), (name, key)




def _decode_through_loader_workers(root: str, names: list[str]) -> list[list[int]]:
    """A node that needs child processes: the stream-mode loader with one spawn-started decoding worker."""
    from dhat.data.files import FileImages  # noqa: PLC0415
    from dhat.data.loading import LoaderSettings, batch_loader  # noqa: PLC0415

    loader, sampler = batch_loader(FileImages(root, names, None), LoaderSettings(workers=1), seed=0)
    sampler.set_batches([torch.tensor([2, 0]), torch.tensor([1])])
    return [batch.sum(dim=(1, 2, 3)).tolist() for batch in loader]


def _pngs(root) -> tuple[Pipeline, DataCatalog, list[list[int]]]:
    """Three small PNG files, the decoding node's pipeline and catalog, and the batch sums it must return."""
    import numpy as np  # noqa: PLC0415
    from kedro_datasets.pickle import PickleDataset  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    pixels = np.arange(3 * 4 * 4 * 3, dtype=np.uint8).reshape(3, 4, 4, 3)
    names = [f"{i}.png" for i in range(3)]
    for name, image in zip(names, pixels, strict=True):
        Image.fromarray(image).save(root / name)
    pipeline = Pipeline([Node(_decode_through_loader_workers, ["params:root", "params:names"], "sums", name="decode")])
    catalog = DataCatalog({"params:root": MemoryDataset(str(root)), "params:names": MemoryDataset(names),
                           "sums": PickleDataset(filepath=str(root / "sums.pkl"))})
    sums = [int(total) for total in pixels.reshape(3, -1).sum(axis=1, dtype=np.int64)]
    return pipeline, catalog, [[sums[2], sums[0]], [sums[1]]]


def test_the_runners_own_workers_can_start_the_loaders_worker_processes(tmp_path):
    """Dask workers are daemonic by default, and a daemonic process may not start children: the runner starts
    its local cluster non-daemonic, so a node whose DataLoader spawns a decoding worker runs there."""
    pytest.importorskip("distributed")
    pipeline, catalog, expected = _pngs(tmp_path)
    DaskRunner(settings={"n_workers": 1, "dashboard_address": None}).run(pipeline, catalog)
    assert catalog.load("sums") == expected


def test_on_daemonic_workers_started_by_hand_the_warning_names_the_fix_and_the_loader_cannot_start(tmp_path, caplog):
    pytest.importorskip("distributed")
    import dask  # noqa: PLC0415
    from distributed import LocalCluster  # noqa: PLC0415

    pipeline, catalog, _ = _pngs(tmp_path)
    with dask.config.set({"distributed.worker.daemon": True}), \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            caplog.at_level("WARNING", logger="dhat.dask_runner"), \
            pytest.raises(AssertionError, match="daemonic processes are not allowed to have children"):
        DaskRunner(settings={"address": cluster.scheduler_address}).run(pipeline, catalog)
    assert "are daemonic" in caplog.text and "--no-daemon" in caplog.text
