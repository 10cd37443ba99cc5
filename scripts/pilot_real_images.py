"""Pilot of the real-image CPU study: training and validation curves only, no test image is scored.

Sizes ``conf/cifar10_cpu`` (model width, training-subset size, epochs) before the study runs:
each method of the study is trained with :func:`dhat.engine.fitting.fit` (the function the Kedro
training node calls) on a class-stratified subset of an image folder, and its per-epoch
history (validation clean and PGD-10 accuracy, epoch time) goes to ``OUT/<tag>_<method>.csv``,
one summary line per run to ``OUT/summary.jsonl``. DHAT's runs first train the seed's mask
model (natural training, selected on validation clean accuracy) and report the share of
training pixels under several absolute thresholds of its Grad-CAM maps.

    python scripts/pilot_real_images.py OUT --root data/01_raw/cifar10-jpeg \
        --train-size 10000 --epochs 10 --seeds 0 --methods pgd_at,uiat,dhat --threads 1

Two such processes with one thread each use a 2-core machine better than one with two.
``--plot FIGURE`` draws every history in OUT (validation clean and PGD-10 per epoch, a panel
per method) instead of training.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from dhat.attention.attributions import stored_attention_maps
from dhat.checkpoints import load_classifier
from dhat.data.registry import load_source
from dhat.data.statistics import channel_statistics
from dhat.engine.fitting import fit
from dhat.pipelines.composition import configured_parameters

#: The study's methods, in the order the figure shows them; their sections come from the environment's YAML.
METHODS = ("natural", "pgd_at", "uiat", "dhat_absolute_mask", "dhat")
THRESHOLDS = (0.1, 0.2, 0.3, 0.5)
logger = logging.getLogger("dhat.pilot")


def _append(out: Path, line: dict) -> None:
    logger.info(json.dumps(line))
    with open(out / "summary.jsonl", "a") as handle:
        handle.write(json.dumps(line) + "\n")


def plot_histories(out: Path, figure: Path) -> None:
    """Validation clean (dashed) and PGD-10 (solid) accuracy per epoch of every history in ``out``."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    runs: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    for path in sorted(out.glob("*.csv")):
        tag, method = path.stem.split("_seed")[0], path.stem.split("_", 5)[-1]
        if method != "mask_model":
            runs.setdefault(method, []).append((f"{tag} seed {path.stem.split('_seed')[1].split('_')[0]}",
                                                pd.read_csv(path)))
    methods = [m for m in METHODS if m in runs]
    fig, axes = plt.subplots(1, len(methods), figsize=(3.6 * len(methods), 3.4), sharey=True, squeeze=False)
    for ax, method in zip(axes[0], methods, strict=True):
        for index, (label, history) in enumerate(runs[method]):
            color = f"C{index}"
            ax.plot(history["epoch"], history["val_pgd10"], color=color, label=label)
            ax.plot(history["epoch"], history["val_clean"], color=color, linestyle="--")
        ax.set_title(method)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("validation accuracy (%)")
    fig.suptitle("Pilot: validation PGD-10 (solid) and clean (dashed) accuracy per epoch", fontsize=9)
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--root", default="data/01_raw/cifar10-jpeg", help="image folder: <root>/{train,test}/<class>/*")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--val-size", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--mask-epochs", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--env", default="cifar10_cpu", help="the environment whose method sections are trained")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plot", type=Path, default=None, help="draw the histories in OUT to this file and stop")
    return parser


def main() -> None:
    parser = _parser()
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    unknown = sorted(set(args.methods.split(",")) - set(METHODS))
    if unknown:
        parser.error(f"--methods: unknown {unknown}; choose from {sorted(METHODS)}")
    if args.plot is not None:
        plot_histories(args.out, args.plot)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)

    data = {"source": "image_folder", "root": args.root, "val_size": args.val_size, "train_size": args.train_size,
            "image_size": args.image_size, "seed": 0}
    source = load_source(data)
    mean, std = channel_statistics(source.train["images"])
    info = {"class_names": source.class_names, "num_classes": len(source.class_names),
            "image_shape": list(source.train["images"].shape[1:]), "mean": mean, "std": std}
    model = {"name": "small_cnn", "width": args.width}
    recipe = {"epochs": args.epochs, "batch_size": 128, "lr": args.lr, "crop_padding": 4, "flip": True,
              "val_batch_size": 1000, "progress": False, "checkpoint_every": 0}
    methods = args.methods.split(",")
    configured = configured_parameters(args.env)
    sections = {m: dict(configured[m]["method"]) for m in methods}
    for seed in (int(s) for s in args.seeds.split(",")):
        tag = f"w{args.width}_n{args.train_size}_e{args.epochs}_s{args.image_size or 32}_seed{seed}"
        masks = None
        if any(sections[m]["name"] == "dhat" for m in methods):
            start = time.perf_counter()
            mask_recipe = {**recipe, "epochs": args.mask_epochs, "select_on": "val_clean", "val_steps": 0, "seed": seed}
            best, _, history = fit(source.train, source.val, None, info, {"name": "natural"}, model, mask_recipe,
                                   "cpu", label="mask_model")
            maps = stored_attention_maps("gradcam", load_classifier(best), source.train, "cpu", batch_size=256)
            masks = {"masks": maps}
            history.to_csv(args.out / f"{tag}_mask_model.csv", index=False)
            scaled = maps.astype(np.float32) / 255
            _append(args.out, {"tag": tag, "method": "mask_model", "seconds": time.perf_counter() - start,
                               "val_clean_best": float(history["val_clean"].max()),
                               **{f"below_{t}": float((scaled < t).mean()) for t in THRESHOLDS}})
        for method in methods:
            start = time.perf_counter()
            section = dict(sections[method])
            training = {**recipe, "seed": seed, **section.pop("training", {})}
            best, _, history = fit(source.train, source.val, masks, info, section, model, training, "cpu", label=method)
            history.to_csv(args.out / f"{tag}_{method}.csv", index=False)
            at_best = history.loc[history["epoch"] == best["metadata"]["best_epoch"]].iloc[0]
            _append(args.out, {"tag": tag, "method": method, "seconds": time.perf_counter() - start,
                               "best_epoch": int(best["metadata"]["best_epoch"]),
                               "val_clean_at_best": float(at_best["val_clean"]),
                               "val_pgd10_at_best": float(at_best["val_pgd10"]),
                               "val_pgd10_last5": [round(v, 1) for v in history["val_pgd10"].tail(5)],
                               "epoch_seconds": float(history["epoch_seconds"].mean()),
                               "coverage": (best["metadata"].get("masks") or {}).get("coverage")})


if __name__ == "__main__":
    main()
