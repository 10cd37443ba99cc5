"""The ten procedural background textures ("styles") of the embedded benchmark.

Each style is a two-colour palette and a pattern (stripes in four directions, a
checkerboard, dots, a gradient, rings, plaid, blotches) drawn with a random phase or
offset per image, so no two backgrounds of a style are identical. Patterns are
defined on a 16-pixel reference grid and keep their look at other image sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["NUM_STYLES", "STYLE_NAMES", "bilinear_resize", "render_textures"]

NUM_STYLES = 10

# One two-colour palette per style (RGB in [0, 1]). The palettes overlap in hue on
# purpose: the texture *pattern* has to matter, not only the mean colour.
_PALETTES = np.array(
    [
        [[0.85, 0.25, 0.20], [0.30, 0.05, 0.05]],  # 0 red horizontal stripes
        [[0.20, 0.55, 0.90], [0.05, 0.10, 0.35]],  # 1 blue vertical stripes
        [[0.25, 0.80, 0.30], [0.05, 0.30, 0.10]],  # 2 green diagonal stripes
        [[0.95, 0.80, 0.20], [0.40, 0.25, 0.05]],  # 3 yellow anti-diagonal stripes
        [[0.80, 0.30, 0.85], [0.25, 0.05, 0.30]],  # 4 purple checkerboard
        [[0.20, 0.85, 0.85], [0.05, 0.25, 0.30]],  # 5 cyan dots
        [[0.95, 0.55, 0.15], [0.15, 0.10, 0.45]],  # 6 orange-to-navy gradient
        [[0.90, 0.90, 0.90], [0.30, 0.30, 0.30]],  # 7 grey rings
        [[0.60, 0.40, 0.20], [0.95, 0.75, 0.60]],  # 8 brown plaid
        [[0.55, 0.85, 0.35], [0.55, 0.15, 0.45]],  # 9 olive/plum blotches
    ],
    dtype=np.float64,
)
STYLE_NAMES = [
    "h_stripes",
    "v_stripes",
    "diag_stripes",
    "antidiag_stripes",
    "checker",
    "dots",
    "gradient",
    "rings",
    "plaid",
    "blotches",
]


@dataclass(frozen=True)
class _Grid:
    """Pixel coordinates of an image, in units of a 16-pixel reference image."""

    y: np.ndarray  # [H, W]
    x: np.ndarray  # [H, W]
    size: int


def _grid(image_size: int) -> _Grid:
    scale = 16.0 / image_size  # patterns keep their look when the image size changes
    coords = (np.arange(image_size) + 0.5) * scale
    y, x = np.meshgrid(coords, coords, indexing="ij")
    return _Grid(y=y, x=x, size=image_size)


def _wave(u: np.ndarray, period: float, phase: np.ndarray) -> np.ndarray:
    """Soft square wave in [0, 1] along ``u`` ([n, H, W]) with per-image phase ([n])."""
    s = np.sin(2 * np.pi * u / period + phase[:, None, None])
    # tanh sharpens the sinusoid into crisp stripes without aliasing to a hard edge.
    return 0.5 + 0.5 * np.tanh(3.0 * s)


def _pattern(style: int, g: _Grid, rng: np.random.Generator, n: int) -> np.ndarray:  # noqa: PLR0911 - one return per texture style
    """Texture pattern in [0, 1], ``[n, H, W]``, with random phase/offset per image."""
    phase = rng.uniform(0, 2 * np.pi, n)
    y, x = g.y[None], g.x[None]
    if style == 0:
        return _wave(np.broadcast_to(y, (n, *g.y.shape)), 4.0, phase)
    if style == 1:
        return _wave(np.broadcast_to(x, (n, *g.x.shape)), 4.0, phase)
    if style == 2:
        return _wave(np.broadcast_to(x + y, (n, *g.x.shape)), 5.0, phase)
    if style == 3:
        return _wave(np.broadcast_to(x - y, (n, *g.x.shape)), 5.0, phase)
    if style == 4:
        phase2 = rng.uniform(0, 2 * np.pi, n)[:, None, None]
        s = np.sin(2 * np.pi * x / 6.0 + phase[:, None, None]) * np.sin(2 * np.pi * y / 6.0 + phase2)
        return 0.5 + 0.5 * np.tanh(4.0 * s)
    if style == 5:
        phase2 = rng.uniform(0, 2 * np.pi, n)[:, None, None]
        s = np.cos(2 * np.pi * x / 4.0 + phase[:, None, None]) + np.cos(2 * np.pi * y / 4.0 + phase2)
        return 0.5 + 0.5 * np.tanh(3.0 * (s - 1.0))  # small bright dots on a dark field
    if style == 6:
        angle = rng.uniform(0, 2 * np.pi, n)[:, None, None]
        u = (x - 8.0) * np.cos(angle) + (y - 8.0) * np.sin(angle)
        return np.clip(0.5 + u / 16.0, 0.0, 1.0)
    if style == 7:
        cy, cx = (rng.uniform(2.0, 14.0, (2, n))[:, :, None, None])
        r = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
        return _wave(r, 4.0, phase)
    if style == 8:
        phase2 = rng.uniform(0, 2 * np.pi, n)
        lines_x = _wave(np.broadcast_to(x, (n, *g.x.shape)), 5.0, phase)
        lines_y = _wave(np.broadcast_to(y, (n, *g.y.shape)), 5.0, phase2)
        return np.maximum(lines_x, lines_y) * 0.5 + lines_x * lines_y * 0.5
    if style == 9:
        coarse = rng.random((n, 4, 4))
        return bilinear_resize(coarse, g.size)
    raise ValueError(f"style must lie in [0, {NUM_STYLES - 1}], got {style}")


def _interp_matrix(src: int, dst: int) -> np.ndarray:
    """``[dst, src]`` matrix of bilinear (align-corners=False) interpolation weights."""
    centres = (np.arange(dst) + 0.5) * src / dst - 0.5
    centres = np.clip(centres, 0, src - 1)
    lo = np.floor(centres).astype(np.int64)
    hi = np.minimum(lo + 1, src - 1)
    frac = centres - lo
    weights = np.zeros((dst, src))
    weights[np.arange(dst), lo] += 1 - frac
    weights[np.arange(dst), hi] += frac
    return weights


def bilinear_resize(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of ``[n, h, w]`` float images to ``[n, size, size]`` (separable matrices)."""
    rows = _interp_matrix(images.shape[1], size)
    cols = _interp_matrix(images.shape[2], size)
    return np.einsum("ih,nhw,jw->nij", rows, images, cols)


def render_textures(
    styles: np.ndarray, image_size: int, rng: np.random.Generator, noise: float = 0.04, contrast: float = 1.0,
    brightness: float = 1.0,
) -> np.ndarray:
    """Float backgrounds ``[n, H, W, 3]`` in [0, 1] for the given style ids.

    Each image gets its own phase/offset, a brightness jitter and Gaussian pixel
    noise, so no two backgrounds of a style are identical copies.

    Raises:
        ValueError: naming ``styles`` when an id is outside ``[0, NUM_STYLES)``.
    """
    styles = np.asarray(styles, dtype=np.int64)
    if styles.size and (styles.min() < 0 or styles.max() >= NUM_STYLES):
        raise ValueError(f"styles must lie in [0, {NUM_STYLES - 1}], got range [{styles.min()}, {styles.max()}]")
    g = _grid(image_size)
    out = np.empty((len(styles), image_size, image_size, 3))
    for style in range(NUM_STYLES):
        idx = np.flatnonzero(styles == style)
        if idx.size == 0:
            continue
        p = _pattern(style, g, rng, idx.size)[..., None]
        light, dark = _PALETTES[style]
        # Shrink the palette towards its midpoint: lower contrast keeps the digit legible.
        mid = (light + dark) / 2
        light, dark = mid + contrast * (light - mid), mid + contrast * (dark - mid)
        out[idx] = dark + (light - dark) * p
    out *= brightness * rng.uniform(0.8, 1.15, (len(styles), 1, 1, 1))
    out += rng.normal(0.0, noise, out.shape)
    return np.clip(out, 0.0, 1.0)
