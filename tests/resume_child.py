"""A training run in its own process, for the crash-and-resume tests (``python -m tests.resume_child``).

Arguments: ``METHOD STATE_PATH OUT_PATH [--kill-after N] [--lr LR] [--devices N] [--stream FOLDER --workers N]``. Trains
``METHOD`` for four epochs on tiny random data with :func:`dhat.engine.fitting.fit`, its resumable
state at ``STATE_PATH``; with ``--kill-after N`` the process sends itself SIGKILL right after
the state of epoch ``N`` is written (a crash: no cleanup, no ``finally``). Otherwise it saves
the final weights and history to ``OUT_PATH``. With ``--devices N`` (N > 1) the training is
data-parallel in N worker processes, and the crash is rank 0's: the launcher then stops the
other workers and fails. With ``--stream FOLDER`` the same images are written there as PNG files
(lossless) and the run streams them (``data.storage: stream``) through ``--workers`` decoding processes.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import dhat.engine.training
from dhat.data.files import FileImages
from dhat.engine.distributed import launch
from dhat.engine.fitting import fit

EPOCHS = 4
METHODS = {
    "pgd_at": {"name": "pgd_at", "params": {"attack": {"steps": 2}}},
    "cfa": {"name": "cfa", "params": {"ccm_start_epoch": 1, "fawa_threshold": 0.0}},
    "sglr": {"name": "sglr", "params": {"attack": {"steps": 2}, "start_fraction": 0.25}},
}


def tiny_data() -> tuple[dict, dict, dict]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    images = rng.integers(0, 256, (60, 8, 8, 3), dtype=np.uint8)
    images[..., 0] = (labels * 100)[:, None, None]  # a learnable cue
    info = {"num_classes": 3, "image_shape": [8, 8, 3], "mean": [0.5] * 3, "std": [0.25] * 3}
    return {"images": images[:48], "labels": labels[:48]}, {"images": images[48:], "labels": labels[48:]}, info


def as_files(image_set: dict, folder: Path, name: str) -> dict:
    """``image_set`` with its images written to ``folder/name/`` as PNG files and read back as FileImages."""
    names = []
    for i, image in enumerate(image_set["images"]):
        relative = f"{name}/{i:03d}.png"
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / relative)
        names.append(relative)
    return {**image_set, "images": FileImages(folder, names, None)}


def crash_after(epoch: int | None) -> None:
    """Make this process SIGKILL itself right after it writes the state of ``epoch``."""
    if epoch is None:
        return
    original = dhat.engine.training.save_state

    def save_then_crash(settings, state):
        original(settings, state)
        if state["epoch"] == epoch:
            os.kill(os.getpid(), signal.SIGKILL)

    dhat.engine.training.save_state = save_then_crash


def worker_fit(kill_after: int | None, *args, **kwargs):
    """One data-parallel worker: rank 0 (the only rank that writes states) may crash, then :func:`fit`."""
    torch.set_num_threads(1)
    crash_after(kill_after)
    return fit(*args, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("method", choices=sorted(METHODS))
    parser.add_argument("state")
    parser.add_argument("out")
    parser.add_argument("--kill-after", type=int, default=None)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--stream", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO)
    if args.devices == 1:
        crash_after(args.kill_after)
    train, val, info = tiny_data()
    if args.stream is not None:
        train, val = as_files(train, args.stream, "train"), as_files(val, args.stream, "val")
    method = METHODS[args.method]
    training = {"epochs": EPOCHS, "batch_size": 16, "lr": args.lr, "val_steps": 2, "progress": False,
                "crop_padding": 1, "devices": args.devices, "loader_workers": args.workers}
    if args.method == "cfa":
        # CFA's averaged model is what is validated: its validation uses the configured attack.
        method["params"]["base"] = {"attack": {"steps": 2}}
    inputs = (train, val, None, info, method, {"name": "small_cnn", "width": 4}, training, "cpu")
    if args.devices > 1 and args.kill_after is not None:
        best, last, history = launch(worker_fit, args.devices, "cpu", args.kill_after, *inputs, state_path=args.state)[0]
    else:  # fit itself launches the workers when training.devices > 1
        best, last, history = fit(*inputs, state_path=args.state)
    torch.save({"best": best["state_dict"], "last": last["state_dict"], "history": history.drop(
        columns=[c for c in history.columns if c.endswith("seconds")]).to_dict("list")}, args.out)


if __name__ == "__main__":
    main()
