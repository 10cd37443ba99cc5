"""The GPU check runs end to end (``--quick`` sizes on the CPU) and writes its tables as it goes."""

from __future__ import annotations

import json
import sys
import tarfile

import pandas as pd
from PIL import Image

from dhat import gpu_check


def _folder(root, per_class=(64, 13)):
    for split, count in zip(("train", "test"), per_class, strict=True):
        for c, cls in enumerate(("ant", "bee", "cat", "dog")):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.new("RGB", (16, 16), (60 * c, 10 * i, 90)).save(root / split / cls / f"{i}.png")


def test_quick_check_writes_every_table_without_kedro(tmp_path, monkeypatch):
    _folder(tmp_path / "images")
    with tarfile.open(tmp_path / "images.tar.gz", "w:gz") as tar:  # the archive form, as shared/data has it
        tar.add(tmp_path / "images", arcname="photos")
    # A bare GPU machine has no Kedro: the check must not import it.
    monkeypatch.setitem(sys.modules, "kedro", None)
    gpu_check.main([str(tmp_path / "out"), "--data", str(tmp_path / "images.tar.gz"), "--quick", "--device", "cpu"])
    out = tmp_path / "out"
    environment = json.loads((out / "environment.json").read_text())
    assert environment["device"].startswith("cpu") and environment["quick"] is True
    bench = pd.read_csv(out / "benchmark.csv")
    assert set(bench["method"]) == set(gpu_check.CORE) and len(bench) == 3 * len(gpu_check.CORE)  # no compile on CPU
    assert (bench.loc[bench["method"] == "pgd_at", "x_pgd_at"] == 1.0).all()
    training = pd.read_csv(out / "training.csv")
    assert training["method"].tolist() == list(gpu_check.CORE) and (training["train_images"] == 200).all()
    assert training["val_clean"].between(0, 100).all() and training.loc[0, "mask_seconds"] >= 0
    summary = (out / "summary.md").read_text()
    assert "## benchmark" in summary and "## training" in summary



def test_the_core_library_imports_without_kedro_pyautoattack_or_captum():
    """What a bare GPU machine lacks (docs/gpu_check.md): the check and the training core must not need it."""
    import subprocess

    code = ("import sys\nfor name in ('kedro', 'kedro_datasets', 'pyautoattack', 'captum', 'mlflow'):\n"
            "    sys.modules[name] = None\nimport dhat.gpu_check, dhat.engine.fitting, dhat.attention.attributions, dhat.attention.reference_model\n")
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
