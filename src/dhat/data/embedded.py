"""The embedded default benchmark: handwritten digits on class-correlated textures.

scikit-learn ships 1,797 handwritten digits (8x8, 16 grey levels), so this
benchmark needs no download. Each digit is upsampled and drawn on one of ten
procedural background textures ("styles"). In training the style is the
digit's class with probability ``rho_train`` and a uniformly random style
otherwise, so the background is a shortcut that works on most training images.
At test time the style is independent of the class, which separates what the
model learned from the digit (the true foreground, known exactly here) from
what it learned from the background. This is the quantity the DHAT paper can
only estimate with attention maps on natural images.

Analysis variants of the test digits:

- ``test``: style independent of the class (the decorrelated test set);
- ``test_aligned``: the same digits with style = class (the training shortcut);
- ``test_random``: the same digits with a second independent draw of styles;
- ``test_foreground_only``: the digit alone on a black background;
- ``test_background_only``: the class's texture without any digit (label = the
  class whose style is shown), so accuracy measures background reliance.

The test variants share each digit's rendering (colour, opacity) and differ only
in the background, so accuracy differences between them come from the
background alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dhat.data.splits import _resolve_count, stratified_indices
from dhat.data.textures import NUM_STYLES, bilinear_resize, render_textures

__all__ = ["DIGIT_CLASS_NAMES", "make_digit_texture_benchmark"]

DIGIT_CLASS_NAMES = [str(d) for d in range(10)]

def _to_uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class _DigitLook:
    """Per-image rendering of a digit: stroke intensity, colour, opacity."""

    intensity: np.ndarray  # [n, H, W] in [0, 1]
    colour: np.ndarray  # [n, 3]
    alpha: np.ndarray  # [n]


def _digit_looks(
    digits: np.ndarray, image_size: int, rng: np.random.Generator, alpha_range: tuple[float, float]
) -> _DigitLook:
    """Upsample 8x8 digits and draw a random colour and opacity for each."""
    intensity = np.clip(bilinear_resize(digits.astype(np.float64) / 16.0, image_size), 0.0, 1.0)
    # A random hue at full brightness (max channel 1, none below 0.35): the colour
    # is no cue, but the stroke is always lighter than the darker textures, so
    # the digit's shape reads the same way on every background.
    hue = rng.uniform(0.0, 1.0, (len(digits), 3))
    colour = 0.35 + 0.65 * hue / np.maximum(hue.max(axis=1, keepdims=True), 1e-6)
    alpha = rng.uniform(*alpha_range, len(digits))
    return _DigitLook(intensity=intensity, colour=colour, alpha=alpha)


def _composite(look: _DigitLook, background: np.ndarray | None, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Alpha-blend the digits over ``background`` (``None``: black) and add pixel noise."""
    a = (look.alpha[:, None, None] * look.intensity)[..., None]
    base = np.zeros((*look.intensity.shape, 3)) if background is None else background
    image = base * (1 - a) + look.colour[:, None, None, :] * a
    return image + rng.normal(0.0, noise, image.shape)


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)


def _check_parameters(  # noqa: PLR0912, PLR0913, PLR0917 - one argument and one check per generator parameter
    seed: int,
    image_size: int,
    rho_train: float,
    val_size: int,
    test_size: int | float,
    digit_alpha: tuple[float, float],
    noise: float,
    mask_threshold: float,
    texture_contrast: float,
    texture_brightness: float,
    total: int,
) -> int:
    """Validate the generator's parameters; return the test count. Errors name the parameter."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int | np.integer) or image_size < 8:
        raise ValueError(f"image_size must be an integer >= 8 (the digits are 8x8), got {image_size!r}")
    if isinstance(rho_train, bool) or not isinstance(rho_train, int | float) or not 0.0 <= float(rho_train) <= 1.0:
        raise ValueError(f"rho_train must lie in [0, 1] (probability that style = class in training), got {rho_train!r}")
    n_test = _resolve_count(test_size, total, "test_size")
    if n_test < 10:
        raise ValueError(f"test_size must give at least 10 test digits (one per class), got {test_size!r}")
    if isinstance(val_size, bool) or not isinstance(val_size, int | np.integer) or val_size < 0:
        raise ValueError(f"val_size must be a non-negative integer, got {val_size!r}")
    if n_test + val_size > total - 100:
        raise ValueError(
            f"test_size ({n_test}) + val_size ({val_size}) leave fewer than 100 of the {total} digits "
            "for training; lower test_size or val_size"
        )
    valid_alpha = (
        isinstance(digit_alpha, tuple | list)
        and len(digit_alpha) == 2
        and all(_is_number(v) for v in digit_alpha)
        and 0.0 < digit_alpha[0] <= digit_alpha[1] <= 1.0
    )
    if not valid_alpha:
        raise ValueError(f"digit_alpha must be a range (low, high) with 0 < low <= high <= 1, got {digit_alpha!r}")
    numbers = {
        "noise": noise,
        "texture_contrast": texture_contrast,
        "texture_brightness": texture_brightness,
        "mask_threshold": mask_threshold,
    }
    for name, value in numbers.items():
        if not _is_number(value):
            raise ValueError(f"{name} must be a number, got {value!r}")
    if not 0.0 <= noise <= 0.5:
        raise ValueError(f"noise must lie in [0, 0.5] (std of pixel noise in [0, 1] units), got {noise!r}")
    if not 0.0 < texture_contrast <= 1.0:
        raise ValueError(f"texture_contrast must lie in (0, 1], got {texture_contrast!r}")
    if not 0.0 < texture_brightness <= 1.0:
        raise ValueError(f"texture_brightness must lie in (0, 1], got {texture_brightness!r}")
    if not 0.0 < mask_threshold < 1.0:
        raise ValueError(f"mask_threshold must lie in (0, 1), got {mask_threshold!r}")
    return n_test


def make_digit_texture_benchmark(
    seed: int = 0,
    image_size: int = 16,
    rho_train: float = 0.9,
    val_size: int = 150,
    test_size: int | float = 450,
    digit_alpha: tuple[float, float] = (0.8, 1.0),
    noise: float = 0.04,
    mask_threshold: float = 0.35,
    texture_contrast: float = 0.5,
    texture_brightness: float = 0.5,
) -> dict[str, dict[str, np.ndarray]]:
    """Build the digits-on-textures benchmark (train/val/test and analysis variants).

    Args:
        seed: seed of every random draw (split, styles, textures, colours, noise).
        image_size: side of the square images (>= 8); digits are upsampled bilinearly.
        rho_train: probability that a training/validation image's style equals
            its class (otherwise the style is uniform over all ten).
        val_size: validation digits, held out from the training digits (same rho).
        test_size: test digits (count, or fraction of the 1,797), disjoint from
            train/val, stratified by class.
        digit_alpha: range of the per-image opacity of the digit stroke.
        noise: std of the Gaussian pixel noise (texture noise and image noise).
        texture_contrast: scale of the texture palettes around their midpoints
            (1 = full contrast); lower values make the digit easier to see.
        texture_brightness: factor on the texture colours; below 1 keeps the
            backgrounds darker than the (bright) digit strokes.
        mask_threshold: a pixel is foreground where the upsampled stroke
            intensity (in [0, 1]) is at least this value.

    Returns:
        ``{"train", "val", "val_decorrelated", "test", "test_aligned", "test_random",
        "test_foreground_only", "test_background_only", "test_in_distribution"}`` -> image set with
        ``images`` uint8 ``[N, H, W, 3]``, ``labels`` int64 ``[N]``, ``masks``
        uint8 ``[N, H, W]`` (255 = digit stroke; all 0 for
        ``test_background_only``) and ``styles`` int64 ``[N]`` (the background
        style id, see :data:`dhat.data.textures.STYLE_NAMES`; -1 for ``test_foreground_only``,
        which has no background). ``test_in_distribution`` is ``test_aligned`` with
        probability ``rho_train`` per image and ``test`` otherwise (the training
        distribution). ``val_decorrelated`` holds the validation digits on backgrounds drawn independently
        of the class, as in ``test``. Class names are :data:`DIGIT_CLASS_NAMES`.

    Raises:
        ValueError: naming the parameter that is out of range.
    """
    from sklearn.datasets import load_digits  # noqa: PLC0415 - imported lazily: only this benchmark needs scikit-learn

    digits = load_digits()
    raw = digits.images  # [1797, 8, 8] floats 0..16
    labels = digits.target.astype(np.int64)
    total = len(labels)
    n_test = _check_parameters(
        seed, image_size, rho_train, val_size, test_size, digit_alpha, noise, mask_threshold,
        texture_contrast, texture_brightness, total,
    )
    alpha_range = (float(digit_alpha[0]), float(digit_alpha[1]))  # YAML gives a list
    rng = np.random.default_rng(seed)

    # Disjoint stratified digits: test first, then validation out of the rest.
    test_idx = stratified_indices(labels, n_test, rng)
    rest = np.setdiff1d(np.arange(total), test_idx)
    val_local = stratified_indices(labels[rest], val_size, rng)
    val_idx = rest[val_local]
    train_idx = np.setdiff1d(rest, val_idx)

    def correlated_styles(y: np.ndarray) -> np.ndarray:
        aligned = rng.random(len(y)) < rho_train
        return np.where(aligned, y, rng.integers(0, NUM_STYLES, len(y)))

    def build(idx: np.ndarray, styles: np.ndarray, look: _DigitLook, mode: str,
              gen: np.random.Generator = rng) -> dict[str, np.ndarray]:
        y = labels[idx]
        fg = look.intensity >= mask_threshold
        if mode == "foreground_only":
            # Noise only on the stroke: the image must be exactly 0 outside the mask.
            image = _composite(look, None, gen, noise) * fg[..., None]
            masks = fg
        elif mode == "background_only":
            image = render_textures(styles, image_size, gen, noise, texture_contrast, texture_brightness)
            masks = np.zeros_like(fg)
        else:
            image = _composite(look, render_textures(styles, image_size, gen, noise, texture_contrast, texture_brightness),
                               gen, noise)
            masks = fg
        return {
            "images": _to_uint8(image),
            "labels": y.copy(),
            "masks": (masks.astype(np.uint8) * 255),
            "styles": styles.astype(np.int64),
        }

    out: dict[str, dict[str, np.ndarray]] = {}
    looks: dict[str, _DigitLook] = {}
    for name, idx in (("train", train_idx), ("val", val_idx)):
        looks[name] = _digit_looks(raw[idx], image_size, rng, alpha_range)
        out[name] = build(idx, correlated_styles(labels[idx]), looks[name], "composite")

    test_labels = labels[test_idx]
    test_look = _digit_looks(raw[test_idx], image_size, rng, alpha_range)
    out["test"] = build(test_idx, rng.integers(0, NUM_STYLES, n_test), test_look, "composite")
    out["test_aligned"] = build(test_idx, test_labels, test_look, "composite")
    out["test_random"] = build(test_idx, rng.integers(0, NUM_STYLES, n_test), test_look, "composite")
    out["test_foreground_only"] = build(test_idx, np.full(n_test, -1), test_look, "foreground_only")
    out["test_background_only"] = build(test_idx, test_labels, test_look, "background_only")
    # The test digits on backgrounds drawn as in training (class-aligned with probability rho_train):
    # the distribution the robust gap compares the training images with. A separate generator keeps
    # every other output identical to what it was before this variant existed.
    aligned = np.random.default_rng([seed, 1]).random(n_test) < rho_train
    out["test_in_distribution"] = {
        key: np.where(aligned.reshape(-1, *[1] * (value.ndim - 1)), out["test_aligned"][key], value)
        for key, value in out["test"].items()
    }
    # The validation digits again, on backgrounds drawn independently of the class as in the test split: a
    # validation split that can reward debiasing (tuning's second protocol). Its own generator keeps the
    # other outputs as they were.
    val_gen = np.random.default_rng([seed, 3])
    out["val_decorrelated"] = build(val_idx, val_gen.integers(0, NUM_STYLES, len(val_idx)), looks["val"], "composite",
                                    val_gen)
    return out
