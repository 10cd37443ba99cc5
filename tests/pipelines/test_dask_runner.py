"""The Dask runner (dhat.dask_runner): its checks before a cluster starts (the study on a cluster: test_end_to_end)."""

from __future__ import annotations

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline

from dhat.dask_runner import DaskRunner, DaskSettings, memory_datasets_between_nodes


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
