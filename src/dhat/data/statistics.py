"""Statistics of a whole image set, computed in chunks so that memory does not grow with the data."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["CHUNK_BYTES", "channel_statistics"]

#: Bytes of uint8 images one step of a pass over a data set reads (the statistics' working memory).
CHUNK_BYTES = 16 * 2**20


def channel_statistics(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) std of uint8 NHWC images, in [0, 1] units (the model's normalisation).

    Exact and in chunks: integer sums of the pixel values and of their squares, so memory
    stays a few chunks of uint8 pixels whatever the data size, and the result does not
    depend on the chunking (no float rounding accumulates).
    """
    channels = images.shape[-1]
    per_image = max(1, int(np.prod(images.shape[1:])))
    step = max(1, CHUNK_BYTES // per_image)
    total = np.zeros(channels, dtype=object)  # Python integers: no overflow at any size
    squares = np.zeros(channels, dtype=object)
    for start in range(0, images.shape[0], step):
        chunk = images[start : start + step].reshape(-1, channels).astype(np.int64)
        total += chunk.sum(axis=0).astype(object)
        squares += np.einsum("ij,ij->j", chunk, chunk).astype(object)
    count = int(images.shape[0]) * (per_image // channels)
    if count == 0:
        raise ValueError("the training split holds no images; check data.train_size and data.val_size")
    mean = [float(s) / (255.0 * count) for s in total]
    # count * sum(x^2) - (sum x)^2 = count^2 * variance, exactly, in integers.
    std = [math.sqrt(int(count * q - s * s)) / (255.0 * count) for s, q in zip(total, squares, strict=True)]
    return [round(m, 6) for m in mean], [round(max(v, 1e-3), 6) for v in std]
