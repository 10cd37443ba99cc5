"""Photograph-sized JPEGs for the loader benchmark, made from scikit-learn's two bundled photographs.

    python scripts/make_photo_jpegs.py --out data/09_benchmarks/photo_jpegs --n 2000

Upscaled 32-pixel JPEGs decode far faster than photographs. These files are closer to
ImageNet's: random crops (40-100 % of each side) of the two 427x640 sample photographs
(``sklearn.datasets.load_sample_images``), resized to 500x375 (ImageNet's most common size),
randomly flipped, colour-jittered and lightly noised so that no two files are alike, saved
at JPEG quality 90 into ``<out>/<class>/`` (two classes: the two source photographs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images


def make(out: Path, n: int, seed: int = 0) -> float:
    """Write ``n`` JPEGs; returns their mean size in KB."""
    rng = np.random.default_rng(seed)
    photos = load_sample_images().images
    sizes = []
    for i in range(n):
        which = i % len(photos)
        photo = photos[which]
        h, w = photo.shape[:2]
        ch, cw = int(h * rng.uniform(0.4, 1.0)), int(w * rng.uniform(0.4, 1.0))
        top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = Image.fromarray(photo[top : top + ch, left : left + cw]).resize((500, 375), Image.Resampling.BILINEAR)
        pixels = np.asarray(crop, dtype=np.float32) * rng.uniform(0.8, 1.2, 3) + rng.normal(0, 3, (375, 500, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        target = out / f"photo{which}" / f"{i:05d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, quality=90)
        sizes.append(target.stat().st_size)
    return float(np.mean(sizes)) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.stdout.write(f"{args.n} JPEGs in {args.out}, mean {make(args.out, args.n, args.seed):.1f} KB\n")


if __name__ == "__main__":
    main()
