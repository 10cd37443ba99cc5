"""Tests of the project's Kedro datasets: round trips, versioning, atomic saves, validation."""

from __future__ import annotations

import json
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io import DataCatalog
from kedro.io.core import DatasetError, Version

from dhat.extras.datasets import LatestResultsDataset, NpzDataset, PathDataset, TorchCheckpointDataset

V_OLD = "2024-01-01T00.00.00.000Z"
V_NEW = "2025-06-30T12.00.00.000Z"


def _leftovers(folder: Path) -> list[str]:
    """Every file below ``folder`` (to check that failed saves leave nothing)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _assert_arrays_equal(expected: dict[str, Any], actual: dict[str, Any]) -> None:
    assert set(expected) == set(actual)
    for key, value in expected.items():
        if isinstance(value, dict):
            _assert_arrays_equal(value, actual[key])
        else:
            assert actual[key].dtype == value.dtype
            np.testing.assert_array_equal(actual[key], value)


def _checkpoint(scale: float = 1.0) -> dict[str, Any]:
    return {
        "state_dict": {"conv.weight": torch.full((2, 3), scale), "bn.num_batches_tracked": torch.tensor(7)},
        "metadata": {"model": {"name": "small_cnn", "mean": [0.5, 0.5]}, "epoch": 3, "best": None, "ok": True},
    }


# --------------------------------------------------------------------------- NpzDataset


def test_npz_round_trip_flat_nested_and_strings(tmp_path: Path) -> None:
    data = {
        "train": {"x": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "y": np.array([1, 0], dtype=np.int64)},
        "classes": np.array(["cat", "dog"]),
        "scalar": np.array(3.5),
    }
    dataset = NpzDataset(filepath=str(tmp_path / "data.npz"))
    assert not dataset.exists()
    dataset.save(data)
    assert dataset.exists()
    loaded = dataset.load()
    _assert_arrays_equal(data, loaded)
    assert loaded["classes"].dtype.kind == "U"
    # The file is a plain compressed npz with the group joined by "/".
    with np.load(tmp_path / "data.npz", allow_pickle=False) as archive:
        assert sorted(archive.files) == ["classes", "scalar", "train/x", "train/y"]
    with zipfile.ZipFile(tmp_path / "data.npz") as archive:
        assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in archive.infolist())


def test_npz_empty_dict_round_trips(tmp_path: Path) -> None:
    dataset = NpzDataset(filepath=str(tmp_path / "empty.npz"))
    dataset.save({})
    assert dataset.load() == {}


def test_npz_versioning_latest_and_pinned(tmp_path: Path) -> None:
    path = str(tmp_path / "arrays.npz")
    NpzDataset(path, version=Version(None, V_OLD)).save({"a": np.array([1])})
    NpzDataset(path, version=Version(None, V_NEW)).save({"a": np.array([2])})
    assert sorted(os.listdir(path)) == [V_OLD, V_NEW]
    assert NpzDataset(path, version=Version(None, None)).load()["a"].tolist() == [2]
    assert NpzDataset(path, version=Version(V_OLD, None)).load()["a"].tolist() == [1]


def test_npz_auto_versions_on_two_saves(tmp_path: Path) -> None:
    path = tmp_path / "auto.npz"
    dataset = NpzDataset(str(path), version=Version(None, None))
    dataset.save({"a": np.array([1])})
    time.sleep(0.01)  # version strings have millisecond resolution
    dataset.save({"a": np.array([2])})
    versions = sorted(os.listdir(path))
    assert len(versions) == 2
    assert dataset.load()["a"].tolist() == [2]
    assert NpzDataset(str(path), version=Version(versions[0], None)).load()["a"].tolist() == [1]


def test_npz_failed_save_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_writer(handle: Any, *args: Any, **kwargs: Any) -> None:
        handle.write(b"PK half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", broken_writer)
    dataset = NpzDataset(filepath=str(tmp_path / "out" / "x.npz"))
    with pytest.raises(DatasetError, match="disk full"):
        dataset.save({"a": np.zeros(3)})
    assert _leftovers(tmp_path) == []
    assert not dataset.exists()


def test_npz_failed_save_keeps_previous_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = NpzDataset(filepath=str(tmp_path / "x.npz"))
    dataset.save({"a": np.array([1, 2])})

    def broken_writer(handle: Any, *args: Any, **kwargs: Any) -> None:
        handle.write(b"garbage")
        raise RuntimeError("killed")

    monkeypatch.setattr(np, "savez_compressed", broken_writer)
    with pytest.raises(DatasetError, match="killed"):
        dataset.save({"a": np.array([3])})
    assert _leftovers(tmp_path) == ["x.npz"]
    assert dataset.load()["a"].tolist() == [1, 2]


def test_npz_versioned_failed_save_leaves_no_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_writer(handle: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError("boom")

    monkeypatch.setattr(np, "savez_compressed", broken_writer)
    path = tmp_path / "v.npz"
    with pytest.raises(DatasetError, match="boom"):
        NpzDataset(str(path), version=Version(None, V_NEW)).save({"a": np.zeros(1)})
    assert _leftovers(tmp_path) == []
    assert not (path / V_NEW).exists()


def test_npz_missing_file_names_file_and_producer(tmp_path: Path) -> None:
    hint = "run `kedro run --pipelines=data_ingestion` first"
    with pytest.raises(DatasetError, match=r"missing\.npz.*data_ingestion"):
        NpzDataset(str(tmp_path / "missing.npz"), produced_by=hint).load()
    with pytest.raises(DatasetError, match=r"missing\.npz.*no saved version.*data_ingestion"):
        NpzDataset(str(tmp_path / "missing.npz"), version=Version(None, None), produced_by=hint).load()
    with pytest.raises(DatasetError, match=r"no file at .*other\.npz'\.$"):
        NpzDataset(str(tmp_path / "other.npz")).load()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([np.zeros(1)], "dict of numpy arrays"),
        ({"a": [1, 2]}, "'a' is a list.*np.asarray"),
        ({"a": np.array([{"k": 1}], dtype=object)}, "dtype object.*astype"),
        ({"g": {"h": {"i": np.zeros(1)}}}, "one level"),
        ({"a/b": np.zeros(1)}, "contains '/'"),
        ({"g": {}}, "empty dict"),
        ({"file": np.zeros(1)}, "reserved"),
        ({3: np.zeros(1)}, "non-empty string"),
    ],
)
def test_npz_rejects_bad_data(tmp_path: Path, data: Any, message: str) -> None:
    dataset = NpzDataset(filepath=str(tmp_path / "bad.npz"))
    with pytest.raises(DatasetError, match=message):
        dataset.save(data)
    assert _leftovers(tmp_path) == []


def test_npz_works_on_a_non_local_filesystem() -> None:
    dataset = NpzDataset(filepath="memory:///dhat-tests/arrays.npz")
    try:
        dataset.save({"g": {"x": np.array([1.5, 2.5])}})
        assert dataset.load()["g"]["x"].tolist() == [1.5, 2.5]
        # The temporary object was moved onto the target, not left beside it.
        assert dataset._fs.find("/dhat-tests") == ["/dhat-tests/arrays.npz"]
    finally:
        dataset._fs.rm("/dhat-tests", recursive=True)


def test_npz_describe_mentions_path(tmp_path: Path) -> None:
    dataset = NpzDataset(str(tmp_path / "d.npz"), produced_by="run X")
    assert "d.npz" in str(dataset._describe()["filepath"])
    assert dataset._describe()["produced_by"] == "run X"


# --------------------------------------------------------------- TorchCheckpointDataset


def test_checkpoint_round_trip_and_weights_only_file(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    dataset = TorchCheckpointDataset(filepath=str(path))
    dataset.save(_checkpoint(2.0))
    loaded = dataset.load()
    assert torch.equal(loaded["state_dict"]["conv.weight"], torch.full((2, 3), 2.0))
    assert loaded["state_dict"]["bn.num_batches_tracked"].item() == 7
    assert loaded["metadata"] == _checkpoint()["metadata"]
    # The file itself loads with the restricted unpickler, without the dataset.
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert set(raw) == {"state_dict", "metadata"}
    assert raw["metadata"]["epoch"] == 3


def test_checkpoint_real_model_state_dict(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    dataset = TorchCheckpointDataset(str(tmp_path / "m.pt"))
    dataset.save({"state_dict": model.state_dict(), "metadata": {"shape": (3, 4), "lr": np.float64(0.1)}})
    loaded = dataset.load()
    restored = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    restored.load_state_dict(loaded["state_dict"])
    assert torch.equal(restored[0].weight, model[0].weight)
    # Metadata is stored as its JSON form: tuples become lists, numpy floats plain floats.
    assert loaded["metadata"] == {"shape": [3, 4], "lr": 0.1}
    assert type(loaded["metadata"]["lr"]) is float


def test_checkpoint_versioning(tmp_path: Path) -> None:
    path = str(tmp_path / "model.pt")
    TorchCheckpointDataset(path, version=Version(None, V_OLD)).save(_checkpoint(1.0))
    TorchCheckpointDataset(path, version=Version(None, V_NEW)).save(_checkpoint(5.0))
    assert sorted(os.listdir(path)) == [V_OLD, V_NEW]
    latest = TorchCheckpointDataset(path, version=Version(None, None)).load()
    pinned = TorchCheckpointDataset(path, version=Version(V_OLD, None)).load()
    assert latest["state_dict"]["conv.weight"][0, 0].item() == 5.0
    assert pinned["state_dict"]["conv.weight"][0, 0].item() == 1.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (torch.nn.Linear(2, 2), "nn.Module.*state_dict"),
        ([1, 2], "expected a dict"),
        ({"state_dict": {}}, r"missing: \['metadata'\]"),
        ({"state_dict": {}, "metadata": {}, "optimizer": {}}, r"unexpected: \['optimizer'\].*inside 'metadata'"),
        ({"state_dict": [torch.zeros(1)], "metadata": {}}, "'state_dict' must be a dict"),
        ({"state_dict": {"w": np.zeros(2)}, "metadata": {}}, r"state_dict\['w'\] is a ndarray"),
        ({"state_dict": {}, "metadata": [1]}, "'metadata' must be a dict"),
        ({"state_dict": {}, "metadata": {"t": torch.zeros(1)}}, "not JSON-serialisable.*tolist"),
        ({"state_dict": {}, "metadata": {"m": torch.nn.Linear(1, 1)}}, "not JSON-serialisable"),
    ],
)
def test_checkpoint_validation_errors(tmp_path: Path, data: Any, message: str) -> None:
    dataset = TorchCheckpointDataset(str(tmp_path / "bad.pt"))
    with pytest.raises(DatasetError, match=message):
        dataset.save(data)
    assert _leftovers(tmp_path) == []


def test_checkpoint_failed_save_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_save(obj: Any, handle: Any, *args: Any, **kwargs: Any) -> None:
        handle.write(b"partial")
        raise OSError("no space left")

    monkeypatch.setattr(torch, "save", broken_save)
    dataset = TorchCheckpointDataset(str(tmp_path / "ckpt" / "model.pt"))
    with pytest.raises(DatasetError, match="no space left"):
        dataset.save(_checkpoint())
    assert _leftovers(tmp_path) == []


def test_checkpoint_missing_file(tmp_path: Path) -> None:
    dataset = TorchCheckpointDataset(str(tmp_path / "none.pt"), produced_by="run `kedro run --pipelines=train` first")
    assert not dataset.exists()
    with pytest.raises(DatasetError, match=r"none\.pt.*--pipelines=train"):
        dataset.load()


def test_checkpoint_refuses_foreign_pickle(tmp_path: Path) -> None:
    path = tmp_path / "foreign.pt"
    torch.save({"model": torch.nn.Linear(2, 2)}, path)  # a whole module, as some repos do
    with pytest.raises(DatasetError, match="foreign.pt"):
        TorchCheckpointDataset(str(path)).load()


def test_a_truncated_checkpoint_names_the_file_and_the_fix(tmp_path: Path) -> None:
    path = str(tmp_path / "model_best.pt")
    TorchCheckpointDataset(path, version=Version(None, V_OLD)).save(_checkpoint(1.0))
    saved = tmp_path / "model_best.pt" / V_OLD / "model_best.pt"
    saved.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])  # a crash in the middle of a copy
    with pytest.raises(DatasetError, match=rf"model_best\.pt/{V_OLD}/model_best\.pt' cannot be read .*truncated or "
                                           r"corrupt.*Retrain.*--load-versions"):
        TorchCheckpointDataset(path, version=Version(None, None)).load()


def test_path_dataset_gives_its_file_and_refuses_to_save(tmp_path: Path) -> None:
    dataset = PathDataset(str(tmp_path / "state.pt"))
    assert dataset.load() == str(tmp_path / "state.pt")
    with pytest.raises(DatasetError, match="read-only"):
        dataset.save("x")


# ---------------------------------------------------------------- LatestResultsDataset


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def test_latest_results_picks_newest_version_and_reads_both_layouts(tmp_path: Path) -> None:
    root = tmp_path / "metrics"
    _write_json(root / "dhat" / "metrics.json" / V_OLD / "metrics.json", {"aa": 0.1})
    _write_json(root / "dhat" / "metrics.json" / V_NEW / "metrics.json", {"aa": 0.5})
    _write_json(root / "dhat" / "metrics.json" / "2023-01-01T00.00.00.000Z" / "metrics.json", {"aa": 0.0})
    _write_json(root / "trades" / "metrics.json", {"aa": 0.4})  # unversioned layout
    (root / "pgd_at").mkdir()  # evaluated nothing yet
    (root / "mart" / "metrics.json" / "2099-01-01T00.00.00.000Z").mkdir(parents=True)  # failed save
    _write_json(root / "mart" / "metrics.json" / V_OLD / "metrics.json", {"aa": 0.3})
    (root / "notes.txt").write_text("not a method")

    dataset = LatestResultsDataset(path=str(root), result_file="metrics.json")
    assert dataset.exists()
    assert dataset.load() == {"dhat": {"aa": 0.5}, "mart": {"aa": 0.3}, "trades": {"aa": 0.4}}


def test_latest_results_csv_loader(tmp_path: Path) -> None:
    root = tmp_path / "tables"
    table_old = root / "dhat" / "eps.csv" / V_OLD / "eps.csv"
    table_new = root / "dhat" / "eps.csv" / V_NEW / "eps.csv"
    for table, acc in ((table_old, 0.1), (table_new, 0.7)):
        table.parent.mkdir(parents=True)
        pd.DataFrame({"eps": [2, 8], "acc": [acc, acc / 2]}).to_csv(table, index=False)
    loaded = LatestResultsDataset(str(root), "eps.csv", loader="csv").load()
    assert list(loaded) == ["dhat"]
    pd.testing.assert_frame_equal(loaded["dhat"], pd.DataFrame({"eps": [2, 8], "acc": [0.7, 0.35]}))


def test_latest_results_empty_or_missing_folder(tmp_path: Path) -> None:
    missing = LatestResultsDataset(str(tmp_path / "nowhere"), "metrics.json")
    assert missing.load() == {}
    assert not missing.exists()
    (tmp_path / "empty").mkdir()
    assert LatestResultsDataset(str(tmp_path / "empty"), "metrics.json").load() == {}


def test_latest_results_is_read_only_and_validates_args(tmp_path: Path) -> None:
    dataset = LatestResultsDataset(str(tmp_path), "metrics.json")
    with pytest.raises(DatasetError, match="read-only"):
        dataset.save({"dhat": {}})
    with pytest.raises(DatasetError, match="'loader'"):
        LatestResultsDataset(str(tmp_path), "metrics.json", loader="yaml")  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match="'result_file'"):
        LatestResultsDataset(str(tmp_path), "sub/metrics.json")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match="is a file"):
        LatestResultsDataset(str(tmp_path / "file"), "metrics.json").load()


def test_latest_results_bad_file_names_it(tmp_path: Path) -> None:
    (tmp_path / "dhat").mkdir()
    (tmp_path / "dhat" / "metrics.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"dhat/metrics\.json as json"):
        LatestResultsDataset(str(tmp_path), "metrics.json").load()


# ------------------------------------------------------------------------ DataCatalog


def test_catalog_from_config_versioned_round_trips(tmp_path: Path) -> None:
    catalog = DataCatalog.from_config(
        {
            "arrays": {
                "type": "dhat.extras.datasets.NpzDataset",
                "filepath": str(tmp_path / "arrays.npz"),
                "versioned": True,
                "produced_by": "run the ingestion",
            },
            "model": {
                "type": "dhat.extras.datasets.TorchCheckpointDataset",
                "filepath": str(tmp_path / "dhat" / "model.pt"),
                "versioned": True,
            },
            "metrics": {
                "type": "json.JSONDataset",
                "filepath": str(tmp_path / "metrics" / "dhat" / "metrics.json"),
                "versioned": True,
            },
            "all_metrics": {
                "type": "dhat.extras.datasets.LatestResultsDataset",
                "path": str(tmp_path / "metrics"),
                "result_file": "metrics.json",
            },
        },
        save_version=V_NEW,
    )
    catalog.save("arrays", {"x": np.array([[1.0, 2.0]])})
    catalog.save("model", _checkpoint(3.0))
    catalog.save("metrics", {"clean": 0.9})

    assert os.listdir(tmp_path / "arrays.npz") == [V_NEW]
    assert (tmp_path / "dhat" / "model.pt" / V_NEW / "model.pt").is_file()
    np.testing.assert_array_equal(catalog.load("arrays")["x"], np.array([[1.0, 2.0]]))
    assert catalog.load("model")["state_dict"]["conv.weight"][1, 2].item() == 3.0
    assert catalog.load("all_metrics") == {"dhat": {"clean": 0.9}}
    assert catalog.exists("all_metrics")
    assert "NpzDataset" in repr(catalog["arrays"])


def test_catalog_pinned_load_version(tmp_path: Path) -> None:
    config = {
        "arrays": {"type": "dhat.extras.datasets.NpzDataset", "filepath": str(tmp_path / "a.npz"), "versioned": True}
    }
    DataCatalog.from_config(config, save_version=V_OLD).save("arrays", {"v": np.array([1])})
    DataCatalog.from_config(config, save_version=V_NEW).save("arrays", {"v": np.array([2])})
    assert DataCatalog.from_config(config).load("arrays")["v"].tolist() == [2]
    pinned = DataCatalog.from_config(config, load_versions={"arrays": V_OLD})
    assert pinned.load("arrays")["v"].tolist() == [1]


def test_latest_results_reads_checkpoints_weights_only(tmp_path):
    first = TorchCheckpointDataset(filepath=str(tmp_path / "a" / "model_best.pt"))
    first.save({"state_dict": {"w": torch.ones(2)}, "metadata": {"epoch": 3}})
    plain = tmp_path / "b" / "model_best.pt"
    plain.parent.mkdir()
    torch.save({"state_dict": {"w": torch.zeros(1)}, "metadata": {}}, plain)
    loaded = LatestResultsDataset(path=str(tmp_path), result_file="model_best.pt", loader="checkpoint").load()
    assert set(loaded) == {"a", "b"}
    assert torch.equal(loaded["a"]["state_dict"]["w"], torch.ones(2)) and loaded["a"]["metadata"]["epoch"] == 3
    # A pickled object is refused by weights_only loading.
    torch.save({"state_dict": {}, "metadata": {"bad": object()}}, plain)
    with pytest.raises(DatasetError, match="cannot parse"):
        LatestResultsDataset(path=str(tmp_path), result_file="model_best.pt", loader="checkpoint").load()
