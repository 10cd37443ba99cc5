"""Peak memory of stream mode on 224-pixel images, and the loader's decoding rate.

    python scripts/bench_streaming.py --root data/01_raw/cifar10-jpeg --out data/09_benchmarks/streaming

Three phases in stream mode (``data.storage: stream``, ``data.image_size: 224``), each in its
own fresh process so that one phase's memory does not count towards the next:

1. ingestion: the ``data_ingestion`` node (listing, split, exact channel statistics over every
   training image, decoded in chunks) and its index files written through the catalog's dataset;
2. ``--steps`` optimiser steps of natural training of the small CNN from the files, through
   the loader with ``--workers`` decoding processes;
3. clean and PGD-10 accuracy of ``--n-eval`` test images (the bounded subset decoded once).

Peak memory is the proportional set size (PSS, so that pages shared between the main process
and its loader workers count once) summed over the phase's process and all its descendants,
sampled every 0.1 s from ``/proc/<pid>/smaps_rollup``. The script also checks that nothing the
size of an upscaled copy was written, and measures the loader's images/s per worker count.
Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dhat.data.files import FileImages
from dhat.data.loading import LoaderSettings, batch_loader
from dhat.data.sources import IMAGE_EXTENSIONS
from dhat.data.splits import take_subset
from dhat.engine.fitting import fit
from dhat.engine.training import evaluate_clean_and_pgd
from dhat.extras.datasets import ImageSetDataset
from dhat.models import build_model
from dhat.pipelines.data_ingestion.nodes import ingest_data
from dhat.tensors import to_device_set


def _pss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/task/{current}/children", encoding="ascii") as handle:
                children = [int(c) for c in handle.read().split()]
        except OSError:
            children = []
        found.extend(children)
        todo.extend(children)
    return found


class PeakPss:
    """Samples the summed PSS of a process tree in a thread; ``peak`` in bytes."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self.pid, self.every, self.peak, self._stop = pid, every, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = sum(_pss_bytes(p) for p in [self.pid, *_descendants(self.pid)])
            self.peak = max(self.peak, total)
            time.sleep(self.every)

    def __enter__(self) -> PeakPss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _data(args: argparse.Namespace) -> dict[str, Any]:
    return {"source": "image_folder", "root": str(args.root), "image_size": args.image_size, "val_size": 500,
            "storage": "stream", "train_size": args.steps * args.batch_size}


def phase_ingest(args: argparse.Namespace) -> dict[str, Any]:
    train, val, test, _variants, _val_variants, info = ingest_data(_data(args))
    for name, split in (("train", train), ("val", val), ("test", test)):
        ImageSetDataset(str(args.out / f"{name}_set.npz")).save(split)
    (args.out / "dataset_info.json").write_text(json.dumps(info, indent=1))
    return {"sizes": info["sizes"], "storage": info["storage"], "reason": info["storage_reason"]}


def phase_train(args: argparse.Namespace) -> dict[str, Any]:
    train = ImageSetDataset(str(args.out / "train_set.npz")).load()
    val = ImageSetDataset(str(args.out / "val_set.npz")).load()
    info = json.loads((args.out / "dataset_info.json").read_text())
    started = time.perf_counter()
    _, _, history = fit(train, val, None, info, {"name": "natural"}, {"name": "small_cnn", "width": 16},
                        {"epochs": 1, "batch_size": args.batch_size, "val_steps": 0, "val_batch_size": 100,
                         "progress": True, "loader_workers": args.workers, "crop_padding": 16, "flip": True}, "cpu")
    steps = -(-len(train["labels"]) // args.batch_size)
    return {"steps": steps, "seconds": time.perf_counter() - started, "train_acc": float(history["train_acc"].iloc[0])}


def phase_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    test = ImageSetDataset(str(args.out / "test_set.npz")).load()
    info = json.loads((args.out / "dataset_info.json").read_text())
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=info["num_classes"], mean=info["mean"], std=info["std"], width=16)
    model.eval()
    started = time.perf_counter()
    subset = to_device_set(take_subset(test, args.n_eval, seed=0), "cpu", name="test_set")
    clean, robust = evaluate_clean_and_pgd(model, subset, 8 / 255, 2 / 255, 10, args.attack_batch)
    return {"n_images": args.n_eval, "attack_batch": args.attack_batch, "clean": clean, "pgd10": robust, "seconds": time.perf_counter() - started}


def phase_loader(args: argparse.Namespace, root: Path, image_size: int, batches: int) -> dict[str, Any]:
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    images = FileImages(root, files, image_size)
    rates = {}
    for workers in args.loader_workers:
        loader, sampler = batch_loader(images, LoaderSettings(workers=workers), seed=0)
        order = np.random.default_rng(workers).permutation(len(files))[: (batches + 2) * args.batch_size]
        sampler.set_batches([order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)])
        iterator = iter(loader)
        next(iterator), next(iterator)  # workers started and warm
        started = time.perf_counter()
        count = sum(batch.shape[0] for batch in iterator)
        rate = count / (time.perf_counter() - started)
        rates[str(workers)] = {"images_per_second": rate, "per_worker": rate / max(workers, 1)}
        del iterator, loader
    sizes = [(root / f).stat().st_size for f in files[:2000]]
    return {"files": len(files), "mean_file_kb": float(np.mean(sizes)) / 1024, "rates": rates}


def _child(phase: str, args: argparse.Namespace, queue: mp.Queue) -> None:
    torch.set_num_threads(args.threads)
    result = {"ingest": phase_ingest, "train": phase_train, "evaluate": phase_evaluate}[phase](args)
    queue.put(result)


def run_phase(phase: str, args: argparse.Namespace) -> dict[str, Any]:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(phase, args, queue))
    started = time.perf_counter()
    process.start()
    with PeakPss(process.pid) as meter:
        process.join()
    if process.exitcode != 0:
        raise SystemExit(f"phase {phase} failed (exit code {process.exitcode})")
    return {**queue.get(), "peak_pss_gb": meter.peak / 1e9, "wall_seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="image folder <root>/{train,test}/<class>/*")
    parser.add_argument("--out", type=Path, required=True, help="where the index files and results.json go")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1, help="decoding processes while training")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--n-eval", type=int, default=1000)
    parser.add_argument("--attack-batch", type=int, default=50,
                        help="images per PGD batch in the evaluation (activations at 224 px set the peak)")
    parser.add_argument("--phases", default="ingest,train,evaluate")
    parser.add_argument("--loader-root", type=Path, action="append", default=[],
                        help="folders whose decoding rate is measured (each at --image-size)")
    parser.add_argument("--loader-workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--loader-batches", type=int, default=20)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"image_size": args.image_size, "batch_size": args.batch_size, "workers": args.workers,
                               "threads": args.threads, "cpus": os.cpu_count()}
    for phase in [p for p in args.phases.split(",") if p]:
        results[phase] = run_phase(phase, args)
        sys.stdout.write(f"{phase} {json.dumps(results[phase])}\n")
    written = {p.name: p.stat().st_size for p in args.out.iterdir() if p.is_file()}
    results["written_bytes"] = written
    for folder in args.loader_root:
        results[f"loader:{folder.name}"] = phase_loader(args, folder, args.image_size, args.loader_batches)
        sys.stdout.write(f"{folder.name} {json.dumps(results[f'loader:{folder.name}'])}\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
