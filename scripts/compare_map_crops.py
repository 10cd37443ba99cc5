"""Crop of a stored 7x7 Grad-CAM map against Grad-CAM recomputed on the crop, by crop scale.

    python scripts/compare_map_crops.py --root data/01_raw/cifar10-jpeg --out data/09_benchmarks/map_crops

Trains a natural small CNN (its Grad-CAM grid is a quarter of the image side: 7x7 on 28-pixel
images, the grid a ResNet-18 has on 224-pixel ImageNet images) on ``--train-size`` images of an
image folder resized to ``--image-size``, then compares, on ``--n`` held-out training-split
images, the two ways DHAT can get the mask of a random-resized crop
(:func:`dhat.analysis.map_crops.crop_agreement`): the stored whole-image map cropped with the
image, and Grad-CAM of the cropped image (the reference code's per-batch recomputation).
Writes ``map_crops.csv`` and ``map_crops.json`` (with the mask model's validation accuracy).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from dhat.analysis.map_crops import crop_agreement
from dhat.attention.gradcam import grad_cam_raw
from dhat.checkpoints import load_classifier
from dhat.engine.fitting import fit
from dhat.pipelines.data_ingestion.nodes import ingest_data
from dhat.tensors import to_device_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="image folder <root>/{train,test}/<class>/*")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--image-size", type=int, default=28, help="28: a 7x7 Grad-CAM grid for the small CNN")
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--n", type=int, default=1000, help="images compared (from the validation split)")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.08, 0.25, 0.5, 1.0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    data = {"source": "image_folder", "root": str(args.root), "image_size": args.image_size,
            "train_size": args.train_size, "val_size": args.n, "storage": "memory"}
    train, val, _test, _variants, _val_variants, info = ingest_data(data)
    started = time.perf_counter()
    best, _, history = fit(train, val, None, info, {"name": "natural"}, {"name": "small_cnn", "width": 16},
                           {"epochs": args.epochs, "batch_size": 128, "lr": 0.05, "crop_padding": 2, "flip": True,
                            "val_steps": 0, "select_on": "val_clean", "val_batch_size": 500}, "cpu")
    train_seconds = time.perf_counter() - started
    model = load_classifier(best, "cpu")
    subset = to_device_set(val, "cpu", name="val_set")
    x, y = subset.float_images(), subset.labels
    grid = tuple(grad_cam_raw(model, x[:1], y[:1]).shape[1:])
    table = crop_agreement(model, x, y, scales=args.scales)
    table.to_csv(args.out / "map_crops.csv", index=False)
    summary = {"image_size": args.image_size, "grad_cam_grid": list(grid), "train_images": len(train["labels"]),
               "epochs": args.epochs, "mask_model_val_clean": float(history["val_clean"].max()),
               "train_seconds": train_seconds, "threads": args.threads, "rows": table.to_dict("records")}
    (args.out / "map_crops.json").write_text(json.dumps(summary, indent=1))
    sys.stdout.write(json.dumps({k: v for k, v in summary.items() if k != "rows"}) + "\n")
    sys.stdout.write(table.to_string(index=False, float_format=lambda v: f"{v:.3f}") + "\n")


if __name__ == "__main__":
    main()
