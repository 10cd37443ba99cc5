"""One catalog entry per unit output: the folder of every unit family, versioning, errors, the project's catalog."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from kedro.io import DataCatalog
from kedro.io.core import DatasetError

from dhat.extras.datasets import NpzDataset, PathDataset, TorchCheckpointDataset
from dhat.extras.datasets.units import UnitDataset, unit_folder

CATALOG = Path(__file__).resolve().parents[3] / "conf" / "base" / "catalog.yml"


@pytest.mark.parametrize(("unit", "folder"), [
    ("dhat", "dhat"),
    ("study_seed3.dhat", "study/seed3/dhat"),
    ("study_seed12.dhat_absolute_mask", "study/seed12/dhat_absolute_mask"),
    ("sensitivity__lambda1__0p5", "sensitivity/lambda1/0p5"),
    ("sensitivity__background_share__0p2", "sensitivity/background_share/0p2"),
    ("mask_source__captum_gradcam", "mask_sources/captum_gradcam"),
    ("fresh_standard_seed200.dhat", "tuning/fresh/standard/seed200/dhat"),
    ("fresh_untuned_seed201.dhat_paper", "tuning/fresh/untuned/seed201/dhat_paper"),
    ("outer.inner", "outer/inner"),  # any other nested namespace: one folder per level
])
def test_every_unit_family_has_its_folder(unit: str, folder: str) -> None:
    assert unit_folder(unit) == folder


@pytest.mark.parametrize("unit", ["", ".dhat", "dhat.", "a..b", "a/b"])
def test_a_name_that_is_not_a_namespace_is_refused(unit: str) -> None:
    with pytest.raises(DatasetError, match="not a namespace"):
        unit_folder(unit)


def test_it_builds_the_wrapped_dataset_in_the_units_folder(tmp_path: Path) -> None:
    dataset = UnitDataset(unit="study_seed1.pgd_at", path=str(tmp_path), file="per_image.npz",
                          dataset={"type": "dhat.extras.datasets.NpzDataset"})
    assert type(dataset) is NpzDataset  # the real type: catalog, versioning and kedro-viz see it
    dataset.save({"clean": np.array([True, False])})
    assert (tmp_path / "study/seed1/pgd_at/per_image.npz").is_file()


def test_the_entry_of_the_project_catalog_resolves_and_versions(tmp_path: Path) -> None:
    entries = yaml.safe_load(CATALOG.read_text())
    config = {name: entry for name, entry in entries.items() if name.startswith("{unit}.")}
    assert {name.removeprefix("{unit}.") for name in config} == {
        "model_best", "model_last", "training_state", "history", "metrics", "attention_examples", "per_image"}
    for entry in config.values():
        entry["path"] = entry["path"].replace("${globals:data_root}", str(tmp_path))
    catalog = DataCatalog.from_config(config, save_version="2026-12-01T00.00.00.000Z")
    best = catalog.get("study_seed2.uiat.model_best")
    assert type(best) is TorchCheckpointDataset
    best.save({"state_dict": {"w": torch.ones(2)}, "metadata": {"epoch": 3}})
    saved = tmp_path / "06_models/study/seed2/uiat/model_best.pt/2026-12-01T00.00.00.000Z/model_best.pt"
    assert saved.is_file()
    state = catalog.get("sensitivity__lambda1__0p5.training_state")
    assert type(state) is PathDataset
    assert state.load() == f"{tmp_path}/06_models/sensitivity/lambda1/0p5/training_state.pt"
    catalog.get("dhat.metrics").save({"best": {"clean": 50.0}})
    assert (tmp_path / "07_model_output/dhat/metrics.json/2026-12-01T00.00.00.000Z/metrics.json").is_file()


def test_a_pinned_load_version_reaches_the_wrapped_dataset(tmp_path: Path) -> None:
    entry = {"type": "dhat.extras.datasets.UnitDataset", "unit": "{unit}", "path": str(tmp_path),
             "file": "metrics.json", "dataset": {"type": "json.JSONDataset"}, "versioned": True}
    for version, clean in (("2026-01-01T00.00.00.000Z", 1.0), ("2026-02-01T00.00.00.000Z", 2.0)):
        DataCatalog.from_config({"{unit}.metrics": entry}, save_version=version).save("dhat.metrics", {"clean": clean})
    assert DataCatalog.from_config({"{unit}.metrics": entry}).load("dhat.metrics") == {"clean": 2.0}
    pinned = DataCatalog.from_config({"{unit}.metrics": entry}, load_versions={"dhat.metrics": "2026-01-01T00.00.00.000Z"})
    assert pinned.load("dhat.metrics") == {"clean": 1.0}


@pytest.mark.parametrize(("options", "message"), [
    ({"dataset": {"filepath": "x"}}, "with a 'type'"),
    ({"dataset": {"type": "json.JSONDataset", "filepath": "x"}}, "remove \\['filepath'\\]"),
    ({"dataset": {"type": "json.JSONDataset", "versioned": True}}, "remove \\['versioned'\\]"),
    ({"file": "sub/metrics.json"}, "bare file name"),
])
def test_bad_entries_say_what_to_fix(tmp_path: Path, options: dict, message: str) -> None:
    args = {"unit": "dhat", "path": str(tmp_path), "file": "metrics.json", "dataset": {"type": "json.JSONDataset"}}
    with pytest.raises(DatasetError, match=message):
        UnitDataset(**(args | options))
