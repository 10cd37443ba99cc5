"""Real photographs end to end: a class-stratified subset of the CIFAR-10 JPEG copy through the ``cifar10`` environment.

The archive is ``../shared/data/cifar10-jpeg.tar.gz`` beside the repository (or the file that
``DHAT_CIFAR10_JPEG`` names); 30 training and 10 test images per class are extracted into a
temporary folder, never into the repository. The sizes are the ``cifar10`` environment's with
these reductions, so the run takes a minute: a small CNN of width 4, one epoch, 50 validation
images, and the ``test`` environment's reduced attacks (AutoAttack with 3 iterations on 12
images: labelled as reduced in the report). The numbers prove nothing about the methods; the
test proves that the real-image path runs and what it writes.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dhat.extras.datasets import NpzDataset
from tests.pipelines.memory import REPO, kedro_env, load_parameters
from tests.pipelines.sessions import latest, run_session, scratch

ARCHIVE = Path(os.environ.get("DHAT_CIFAR10_JPEG", REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"))
PER_CLASS = {"train": 30, "test": 10}
CORE_WITHOUT_ORACLE = ["natural", "pgd_at", "uiat", "dhat"]
#: Where the cifar10 environment keeps its outputs (its globals.yml), apart from the embedded default's data/.
DATA = "data/cifar10"

pytestmark = pytest.mark.skipif(
    not ARCHIVE.is_file(), reason=f"the CIFAR-10 JPEG archive is not at {ARCHIVE} (set DHAT_CIFAR10_JPEG to its path)")


def extract_subset(archive: Path, target: Path, per_class: dict[str, int]) -> Path:
    """The first ``per_class[split]`` files of each class (sorted by name) of ``archive``, extracted to ``target``."""
    with tarfile.open(archive, "r:gz") as tar:
        names = sorted(m.name for m in tar.getmembers() if m.isfile() and m.name.lower().endswith(".jpg"))
    chosen: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name in names:
        split, cls, _ = name.split("/", 2)
        if split in per_class and len(chosen[split, cls]) < per_class[split]:
            chosen[split, cls].append(name)
    wanted = {n for files in chosen.values() for n in files}
    with tarfile.open(archive, "r:gz") as tar:  # one sequential pass
        for member in tar:
            if member.name in wanted:
                out = target / member.name
                out.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as source, open(out, "wb") as sink:
                    shutil.copyfileobj(source, sink)
    return target


def _tiny(folder: Path) -> dict:
    """The ``cifar10`` environment with the test's reductions (see the module docstring)."""
    test = load_parameters("test")
    return {
        "data": {"source": "image_folder", "root": str(folder), "val_size": 50},
        "model": {"name": "small_cnn", "width": 4},
        "training": {"epochs": 1, "batch_size": 64, "val_steps": 2, "val_batch_size": 100, "progress": False},
        "mask_model": {"model": {"name": "small_cnn", "width": 4},
                       "training": {"epochs": 1, "batch_size": 64, "val_batch_size": 100, "progress": False}},
        "evaluation": {**test["evaluation"], "suite": {**test["evaluation"]["suite"], "batch_size": 100}},
        "transfer": test["transfer"],
        "analysis": test["analysis"],
        "mask_sources": {"options": {"integrated_gradients": {"n_steps": 4, "baseline": "black"}}, "attacks": ["pgd10"]},
    }


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return extract_subset(ARCHIVE, tmp_path_factory.mktemp("cifar10_jpeg_subset"), PER_CLASS)


@pytest.fixture(scope="module")
def cifar_env():
    with kedro_env("cifar10"):
        yield


@pytest.fixture(scope="module")
def real_project(tmp_path_factory, photos, cifar_env) -> Path:
    root = scratch(tmp_path_factory.mktemp("dhat_real"))
    run_session(root, env="cifar10", pipeline_names=["train_eval"], params=_tiny(photos))
    return root


def test_train_eval_runs_on_real_photographs_and_leaves_the_oracle_out(real_project):
    info = json.loads((real_project / f"{DATA}/05_model_input/dataset_info.json").read_text())
    assert info["source"] == "image_folder" and info["image_shape"] == [32, 32, 3] and info["provides"] == []
    assert info["sizes"] == {"train": 250, "val": 50, "test": 100} and info["class_names"][0] == "airplane"
    assert all(0.3 < m < 0.6 for m in info["mean"])  # photographs, not noise or black images
    table = pd.read_csv(real_project / f"{DATA}/08_reporting/table1_robustness.csv")
    assert table["method"].tolist() == CORE_WITHOUT_ORACLE
    report = (real_project / f"{DATA}/08_reporting/report.md").read_text()
    assert "reduced" in report and "dhat_true_masks" not in report
    metrics = json.loads(latest(real_project / f"{DATA}/07_model_output/dhat/metrics.json").read_text())
    masks = metrics["masks"]  # the cifar10 environment's DHAT: the paper's absolute rule, omega 0.1
    assert (masks["source"], masks["rule"], masks["omega"]) == ("gradcam", "absolute", 0.1)
    assert 0.0 <= masks["coverage"] <= 1.0 and masks["iou_true_background"] is None  # no truth on photographs
    assert metrics["evaluation"]["n_test"] == 100 and "bias" not in metrics  # no background variants either


def test_a_mask_model_checkpoint_is_loaded_instead_of_trained_and_gives_the_same_masks(real_project, photos, tmp_path):
    project = shutil.copytree(real_project, tmp_path / "copy")
    trained = latest(project / f"{DATA}/06_models/mask_model/model.pt")
    given = shutil.copy(trained, tmp_path / "reference.pt")
    before = NpzDataset(str(project / f"{DATA}/04_feature/attention_masks.npz")).load()["masks"]
    params = _tiny(photos)
    params["mask_model"]["checkpoint"] = str(given)
    run_session(project, env="cifar10", pipeline_names=["data_ingestion", "mask_precomputation"], params=params)
    after = NpzDataset(str(project / f"{DATA}/04_feature/attention_masks.npz")).load()["masks"]
    np.testing.assert_array_equal(after, before)
    history = pd.read_csv(project / f"{DATA}/07_model_output/mask_model/history.csv")
    assert history["epoch"].tolist() == [0] and history["loaded_from"].tolist() == [str(given)]


def test_external_masks_beside_the_photographs_train_dhat(real_project, photos, tmp_path):
    """Box masks written beside the images (the centre 16x16 is foreground): DHAT's background is the rest."""
    masks = tmp_path / "masks"
    box = np.zeros((32, 32), np.uint8)
    box[8:24, 8:24] = 255
    for image in (photos / "train").rglob("*.jpg"):
        target = masks / image.relative_to(photos).with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(box, mode="L").save(target)
    project = shutil.copytree(real_project, tmp_path / "copy")
    params = _tiny(photos)
    params["data"]["external_masks"] = str(masks)
    run_session(project, env="cifar10", pipeline_names=["data_ingestion"], params=params)
    params["dhat"] = {"method": {"params": {"mask_source": "external"}}}
    run_session(project, env="cifar10", pipeline_names=["train_eval"], namespaces=["dhat"], params=params)
    checkpoint = torch.load(latest(project / f"{DATA}/06_models/dhat/model_best.pt"), weights_only=True)
    described = checkpoint["metadata"]["masks"]
    assert described["source"] == "external" and described["coverage"] == pytest.approx(1 - 256 / 1024)


def test_mask_sources_run_on_real_photographs_with_the_environments_list(real_project, photos, tmp_path):
    project = shutil.copytree(real_project, tmp_path / "copy")
    run_session(project, env="cifar10", pipeline_names=["mask_sources"], params=_tiny(photos))
    table = pd.read_csv(project / f"{DATA}/08_reporting/mask_sources/mask_sources.csv").set_index("source")
    assert list(table.index) == ["gradcam", "captum_gradcam", "integrated_gradients"]  # conf/cifar10: no 'true'
    # Scored on the evaluation's subset (conf/test's evaluation.n_eval: 24 of the 100 test photographs).
    assert table["coverage"].between(0, 1).all() and (table["n_images"] == 24).all()


def test_photographs_given_with_params_to_a_pipeline_built_for_the_digits_stop_before_any_work(photos, tmp_path,
                                                                                                  monkeypatch):
    """``kedro run --pipelines=train_eval --params data.source=image_folder,...`` in an environment of the embedded data:
    the pipeline has the oracle, the data has no true masks; nothing may start."""
    monkeypatch.setenv("KEDRO_ENV", "test")
    project = scratch(tmp_path)
    params = {"data": {"source": "image_folder", "root": str(photos), "val_size": 50}}
    with pytest.raises(ValueError, match=r"(?s)dhat_true_masks \(dhat_true_masks\.method\.params\.mask_source: true\).*"
                                         r"data\.source='image_folder'.*--namespaces"):
        run_session(project, pipeline_names=["train_eval"], params=params)
    assert not (project / "data").exists() or not any((project / "data").rglob("*.npz"))


def test_the_cpu_studys_pipeline_runs_on_real_photographs(photos):
    """``conf/cifar10_cpu``'s study (its methods, per-seed mask models, comparisons) on two of its seeds, in memory,
    with the test sizes above: every unit trains and is scored, the aggregation and the mask report are written."""
    from dhat.pipelines.study.pipeline import create_pipeline
    from dhat.stats.study import StudySettings
    from tests.pipelines.memory import run_pipeline

    params = load_parameters("cifar10_cpu")
    for key, value in _tiny(photos).items():
        params[key] = {**params.get(key, {}), **value}
    params["data"]["train_size"] = None
    settings = StudySettings.from_dict(params["study"])
    two = StudySettings(settings.seeds[:2], settings.methods, settings.mask_model_per_seed, settings.comparisons)
    catalog = run_pipeline(create_pipeline(two), params, **{f"study_seed{s}.seed": s for s in two.seeds})
    table = catalog.load("study_table")
    assert set(table["method"]) == set(settings.methods) and (table["n_seeds"] == 2).all()
    assert set(table["attack"]) == {"clean", "pgd5", "autoattack"}
    assert table.groupby("attack")["n_images"].max().to_dict() == {"autoattack": 12, "clean": 24, "pgd5": 24}
    paired = catalog.load("study_paired_table")
    assert set(paired["comparison"]) == {
        "DHAT (mask omega 0.1) - UIAT", "DHAT (mask omega 0.1) - PGD-AT", "DHAT - UIAT", "DHAT - PGD-AT",
        "DHAT (mask omega 0.1) - DHAT", "UIAT - PGD-AT"}
    masks = catalog.load("study_masks_table").set_index(["method", "seed"])
    assert masks.loc[("dhat", 0), "coverage"] == pytest.approx(0.5, abs=0.01)  # the quantile rule: half the pixels
    assert masks.loc[("dhat_absolute_mask", 1), "rule"] == "absolute"
    titles = [ax.get_title() for ax in catalog.load("study_masks_figure").get_axes()[:4]]
    assert titles == ["image", "Grad-CAM map", "background:\nDHAT (mask omega 0.1)", "background:\nDHAT (quantile 0.5)"]


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def test_stream_mode_keeps_the_photographs_in_their_files_and_gives_memory_modes_metrics(real_project, photos, tmp_path):
    """``data.storage: stream``: ingestion writes an index, not pixels; natural and PGD-AT train from the files (two
    decoding workers) to the same metrics, per-image record and history as the memory-mode run, on the same CPU."""
    project = shutil.copytree(real_project, tmp_path / "copy")
    params = _tiny(photos)
    params["data"]["storage"] = "stream"
    params["training"]["loader_workers"] = 2
    run_session(project, env="cifar10", pipeline_names=["data_ingestion"], params=params)
    with np.load(project / f"{DATA}/05_model_input/train_set.npz", allow_pickle=False) as index:
        assert "images" not in index.files and index["files"].shape == (250,) and str(index["storage"]) == "stream"
    info = json.loads((project / f"{DATA}/05_model_input/dataset_info.json").read_text())
    memory_info = json.loads((real_project / f"{DATA}/05_model_input/dataset_info.json").read_text())
    assert info["storage"] == "stream" and memory_info["storage"] == "memory"
    assert info["mean"] == memory_info["mean"] and info["std"] == memory_info["std"]  # exact integer sums either way
    run_session(project, env="cifar10", pipeline_names=["train_eval"], namespaces=["natural", "pgd_at"], params=params)
    for method in ("natural", "pgd_at"):
        out = f"{DATA}/07_model_output/{method}"
        streamed, memory = (json.loads(latest(p / f"{out}/metrics.json").read_text()) for p in (project, real_project))
        assert _without_timings(streamed) == _without_timings(memory), method
        histories = [pd.read_csv(latest(p / f"{out}/history.csv")) for p in (project, real_project)]
        histories = [frame.drop(columns=[c for c in frame.columns if c.endswith("seconds")]) for frame in histories]
        pd.testing.assert_frame_equal(*histories)
        records = [NpzDataset(str(latest(p / f"{out}/per_image.npz"))).load() for p in (project, real_project)]
        assert records[0].keys() == records[1].keys()
        for key in records[0]:
            np.testing.assert_equal(records[0][key], records[1][key])
