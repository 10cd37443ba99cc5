"""A five-minute check of the GPU path on one GPU: step timings and a real-image epoch of each core method.

    PYTHONPATH=src python -m dhat.gpu_check <out folder> --data <cifar10-jpeg.tar.gz or its extracted folder>

It needs only PyTorch, torchvision, timm, numpy, pandas, scipy, scikit-learn, Pillow and tqdm
(no Kedro, pyautoattack or captum: it calls the project's core library), and writes as it goes,
so a run cut short still leaves what it measured:

- ``environment.json``: the machine, the versions;
- ``benchmark.csv``: ``dhat-benchmark`` of natural, PGD-AT, UIAT and DHAT on ResNet-18 at
  32x32 (batch 128) in fp32, bf16, bf16 + channels_last, and bf16 + channels_last + compile:
  seconds per step, images/s, ratio to PGD-AT, peak memory, projected CIFAR-10 epoch;
- ``training.csv``: one epoch (about 380 steps of batch 128) of the natural mask model, then
  its Grad-CAM masks of every training image, then one epoch of PGD-AT, UIAT and DHAT, on the
  CIFAR-10 JPEG copy (bf16, channels_last): epoch seconds, images/s, validation clean and
  PGD-10 accuracy on 1,000 held-out training images (one epoch: a speed check, not a result);
- ``summary.md``: both tables.

``--quick`` shrinks everything (small CNN, a few hundred images, no compile) so that the
check itself is tested on a CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from dhat.benchmark import benchmark_methods, benchmark_table
from dhat.config import device_label, resolve_device
from dhat.data.registry import load_source
from dhat.data.statistics import channel_statistics
from dhat.engine.fitting import fit

__all__ = ["main"]

logger = logging.getLogger(__name__)

CORE = ("natural", "pgd_at", "uiat", "dhat")
#: The core methods as ``conf/cifar10`` configures them (paper table 1: UIAT's inverse radius 4/255,
#: DHAT with the reference code's FLOE and the absolute mask threshold omega = 0.1).
METHOD_SECTIONS: dict[str, dict[str, Any]] = {
    "natural": {"name": "natural"},
    "pgd_at": {"name": "pgd_at"},
    "uiat": {"name": "uiat", "params": {"inverse": {"eps": "4/255"}}},
    "dhat": {"name": "dhat", "params": {"floe": "reference", "mask_rule": "absolute"}},
}
#: (precision, channels_last, compile) of each benchmark row.
CONFIGURATIONS = (("fp32", False, False), ("bf16", False, False), ("bf16", True, False), ("bf16", True, True))


def _append(path: Path, rows: pd.DataFrame) -> None:
    """Add ``rows`` to the CSV at ``path`` (header once), flushed at once so an interrupted run keeps them."""
    rows.to_csv(path, mode="a", header=not path.exists(), index=False)


def _image_folder(data: Path, scratch: Path) -> Path:
    """``data`` itself if it is a folder with ``train/`` and ``test/``; else the archive extracted into ``scratch``."""
    if data.is_dir():
        return data
    with tarfile.open(data, "r:*") as tar:
        tar.extractall(scratch, filter="data")
    root = next((p for p in (scratch, *scratch.iterdir()) if (p / "train").is_dir() and (p / "test").is_dir()), None)
    if root is None:
        raise FileNotFoundError(f"{data} holds no train/ and test/ folders")
    return root


def _benchmark(out: Path, quick: bool, device: str) -> None:
    for precision, channels_last, compiled in CONFIGURATIONS:
        if quick and compiled:
            continue  # compiling on a CPU takes minutes and proves nothing about the GPU path
        started = time.perf_counter()
        results = benchmark_methods(
            CORE, "small_cnn" if quick else "resnet18", 16 if quick else 32, 10, 32 if quick else 128,
            steps=1 if quick else 20, warmup=0 if quick else (10 if compiled else 3), device=device,
            model_options={"width": 4} if quick else None, precision=precision, channels_last=channels_last,
            compile=compiled)
        table = benchmark_table(results, 32 if quick else 128)
        table.insert(1, "precision", precision)
        table.insert(2, "channels_last", channels_last)
        table.insert(3, "compile", compiled)
        table["wall_s"] = time.perf_counter() - started
        _append(out / "benchmark.csv", table)
        logger.info("benchmark %s%s%s done", precision, " channels_last" if channels_last else "",
                    " compile" if compiled else "")


def _training(out: Path, data: Path, quick: bool, device: str) -> None:
    with tempfile.TemporaryDirectory(prefix="dhat-gpu-check-") as scratch:
        root = _image_folder(data, Path(scratch))
        sizes = {"val_size": 50, "train_size": 200, "test_size": 50} if quick else {"val_size": 1000}
        started = time.perf_counter()
        loaded = load_source({"source": "image_folder", "root": str(root), **sizes})
        load_seconds = time.perf_counter() - started
    train, val = loaded.train, loaded.val
    mean, std = channel_statistics(train["images"])
    info = {"class_names": loaded.class_names, "num_classes": len(loaded.class_names),
            "image_shape": list(train["images"].shape[1:]), "mean": mean, "std": std}
    model = {"name": "small_cnn", "width": 4} if quick else {"name": "resnet18"}
    recipe = {"epochs": 1, "batch_size": 32 if quick else 128, "lr": 0.1, "crop_padding": 4, "flip": True,
              "val_steps": 2 if quick else 10, "val_batch_size": 1000, "progress": False, "checkpoint_every": 0,
              "precision": "fp32" if quick else "bf16", "channels_last": not quick}
    masks = None
    for method in CORE:
        started = time.perf_counter()
        best, _, history = fit(train, val, masks, info, METHOD_SECTIONS[method], model, recipe, device, label=method)
        seconds = time.perf_counter() - started
        row = history.iloc[-1]
        extra = {}
        if method == "natural":  # the mask model of this check: its Grad-CAM of every training image
            from dhat.attention.attributions import stored_attention_maps  # noqa: PLC0415
            from dhat.checkpoints import load_classifier  # noqa: PLC0415

            mapped = time.perf_counter()
            maps = stored_attention_maps("gradcam", load_classifier(best, resolve_device(device)), train,
                                         resolve_device(device), batch_size=512)
            masks = {"masks": maps}
            extra = {"mask_seconds": time.perf_counter() - mapped}
        _append(out / "training.csv", pd.DataFrame([{
            "method": method, "train_images": len(train["labels"]), "load_seconds": load_seconds,
            "epoch_seconds": float(row["epoch_seconds"]), "images_per_s": len(train["labels"]) / float(row["epoch_seconds"]),
            "val_clean": float(row["val_clean"]), "val_pgd10": float(row["val_pgd10"]), "fit_seconds": seconds,
            "precision": recipe["precision"], "channels_last": recipe["channels_last"], **extra}]))
        logger.info("training %s: %.1f s for the epoch", method, float(row["epoch_seconds"]))


def _summary(out: Path, environment: dict[str, Any]) -> None:
    from dhat.stats.reporting import markdown_table  # noqa: PLC0415 - matplotlib loads only for the summary

    lines = [f"# GPU check: {environment['device']}", "", f"torch {environment['torch']}, "
             f"{environment['started']}", ""]
    for name in ("benchmark", "training"):
        path = out / f"{name}.csv"
        if path.exists():
            table = pd.read_csv(path).round(4)
            lines += [f"## {name}", "", markdown_table(table, list(table.columns)), ""]
    (out / "summary.md").write_text("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the tables (created)")
    parser.add_argument("--data", type=Path, required=True,
                        help="the CIFAR-10 JPEG copy: its .tar.gz, or the folder holding train/ and test/")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for testing the check on a CPU")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: benchmark, training")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not args.data.exists():
        parser.error(f"--data {args.data} does not exist; copy ../shared/data/cifar10-jpeg.tar.gz next to the check")
    args.out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(args.device)
    environment = {"device": device_label(device), "torch": torch.__version__, "python": platform.python_version(),
                   "cuda": torch.version.cuda, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick}
    (args.out / "environment.json").write_text(json.dumps(environment, indent=1))
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if "benchmark" not in skip:
        _benchmark(args.out, args.quick, str(device))
        _summary(args.out, environment)
    if "training" not in skip:
        _training(args.out, args.data, args.quick, str(device))
        _summary(args.out, environment)


if __name__ == "__main__":
    main()
