"""Attention map sources for DHAT's masks (``mask_sources.sources``).

A source turns a classifier and labelled images into per-image maps ``[N, H, W]``
in ``[0, 1]`` (higher = more foreground), min-max normalised per image exactly
like :func:`dhat.attention.gradcam.grad_cam` (a constant map becomes all zeros).  Every
source runs the model in eval mode and restores its previous train/eval mode,
builds no parameter gradients and leaves the images' ``requires_grad`` alone.

Registered sources:

- ``gradcam``: the project's own :func:`dhat.attention.gradcam.grad_cam`.
- ``captum_gradcam``: captum's ``LayerGradCam`` on the module producing
  ``model.features`` (ReLU, bilinear upsampling); the same numbers as ``gradcam``.
- ``integrated_gradients``: captum's ``IntegratedGradients`` for the label, from a
  black (or per-channel mean) baseline; the map is ``|sum over channels of the attribution|``.

New sources are added with :func:`register_attribution` and run in batches by
:func:`attention_maps` (a tensor of images) or :func:`iterate_attention_maps` /
:func:`stored_attention_maps` (a numpy image set of any size, one batch in memory at a time).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from dhat.attacks import batchnorm_mode
from dhat.attention.gradcam import grad_cam
from dhat.attention.gradcam import quantize_masks as quantize_maps
from dhat.models import ImageClassifier
from dhat.registry import Registry

__all__ = [
    "ATTRIBUTIONS",
    "AttributionSource",
    "attention_maps",
    "available_attributions",
    "iterate_attention_maps",
    "stored_attention_maps",
    "integrated_gradients_attributions",
    "min_max_normalise",
    "register_attribution",
]

#: ``fn(model, images, labels, **options) -> maps [N, H, W]`` in ``[0, 1]``.
AttributionSource = Callable[..., torch.Tensor]
#: ``prepare(channel_mean, options) -> options``: run once for the whole set before batching;
#: ``channel_mean()`` is the set's per-channel mean pixel ``[C, 1, 1]``.
OptionPreparer = Callable[[Callable[[], torch.Tensor], dict[str, Any]], dict[str, Any]]
Baseline = Literal["black", "mean"] | torch.Tensor

#: Attention map sources by name (``mask_sources.sources``).
ATTRIBUTIONS: Registry[AttributionSource] = Registry("attention map source", "mask_sources.sources")
_PREPARERS: dict[str, OptionPreparer] = {}


def register_attribution(
    name: str, prepare: OptionPreparer | None = None
) -> Callable[[AttributionSource], AttributionSource]:
    """Decorator registering ``fn(model, images, labels, *, option=default, ...)`` as source ``name``.

    The options a source accepts are its keyword-only parameters (:func:`attention_maps`
    rejects any other). ``prepare``, when given, resolves options that depend on the
    whole image set (e.g. a mean image) once, so the maps do not depend on the batch size.
    """

    def decorate(source: AttributionSource) -> AttributionSource:
        ATTRIBUTIONS.register(name)(source)
        if prepare is not None:
            _PREPARERS[name] = prepare
        return source

    return decorate


def available_attributions() -> tuple[str, ...]:
    """Names of the registered sources, in registration order."""
    return ATTRIBUTIONS.names()


def min_max_normalise(maps: torch.Tensor) -> torch.Tensor:
    """Per-image min-max normalisation of ``[N, H, W]`` maps to ``[0, 1]``, as in :func:`dhat.attention.gradcam.grad_cam`.

    A constant map becomes all zeros.
    """
    flat = maps.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1)
    span = (flat.max(dim=1).values.view(-1, 1, 1) - low).clamp_min(1e-12)
    return ((maps - low) / span).clamp_(0.0, 1.0)


def _option_names(source: AttributionSource) -> tuple[str, ...]:
    """The keyword-only parameters of ``source``: the options it accepts."""
    parameters = inspect.signature(source).parameters.values()
    return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


def attention_maps(
    source: str,
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 256,
    **options: Any,
) -> torch.Tensor:
    """Maps ``[N, H, W]`` in ``[0, 1]`` of source ``source`` for ``images`` ``[N, C, H, W]`` and ``labels`` ``[N]``.

    Images are float pixels in ``[0, 1]`` on the model's device; the maps come back on
    the images' device, computed ``batch_size`` images at a time (the batch size does
    not change the result).

    Raises:
        ValueError: naming ``mask_sources.sources`` and the choices for an unknown source,
            the option and the source for an option the source does not take, or
            ``batch_size`` when it is not a positive integer.
    """
    fn = _checked(source, options, batch_size)
    labels = labels.to(images.device)
    if source in _PREPARERS:
        options = _PREPARERS[source](lambda: images.detach().mean(dim=(0, 2, 3), keepdim=True)[0], dict(options))
    maps = [
        fn(model, images[i : i + batch_size], labels[i : i + batch_size], **options).to(images.device)
        for i in range(0, images.shape[0], batch_size)
    ]
    return torch.cat(maps) if maps else images.new_zeros((0, *images.shape[-2:]))


def _checked(source: str, options: Mapping[str, Any], batch_size: int) -> AttributionSource:
    """The source's function, after checking its options and the batch size (errors name both)."""
    fn = ATTRIBUTIONS.get(source)
    accepted = _option_names(fn)
    for option in options:
        if option not in accepted:
            raise ValueError(
                f"attention map source {source!r} takes no option {option!r}; "
                f"its options are: {', '.join(accepted) or 'none'}"
            )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return fn


def _channel_mean(image_set: Mapping[str, np.ndarray], device: torch.device | str) -> torch.Tensor:
    """Per-channel mean pixel ``[C, 1, 1]`` in ``[0, 1]`` of uint8 NHWC images, from exact integer sums, in chunks."""
    images = np.asarray(image_set["images"])
    channels = images.shape[-1]
    total = np.zeros(channels, dtype=np.float64)
    step = max(1, 2**26 // max(1, int(np.prod(images.shape[1:]))))
    for start in range(0, images.shape[0], step):
        total += images[start : start + step].reshape(-1, channels).sum(axis=0, dtype=np.int64)
    count = max(1, images.shape[0] * images.shape[1] * images.shape[2])
    return torch.from_numpy(total / (255.0 * count)).float().view(-1, 1, 1).to(device)


def iterate_attention_maps(
    source: str,
    model: nn.Module,
    image_set: Mapping[str, np.ndarray],
    device: torch.device | str,
    batch_size: int = 256,
    progress: bool = False,
    **options: Any,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """:func:`attention_maps` of a numpy image set, batch by batch: yields ``(start, end, maps [B, H, W])``.

    Only one batch of float images is in memory at a time (:func:`dhat.tensors.iterate_set`),
    so this scales to any data size; the maps equal :func:`attention_maps` on the whole set
    (for a ``mean`` baseline, up to float rounding of the mean pixel).
    """
    from tqdm.auto import tqdm  # noqa: PLC0415

    from dhat.tensors import iterate_set  # noqa: PLC0415 - keeps this module importable without the data layer

    fn = _checked(source, options, batch_size)
    if source in _PREPARERS:
        options = _PREPARERS[source](lambda: _channel_mean(image_set, device), dict(options))
    batches = iterate_set(image_set, device, batch_size, name="train_set")
    total = len(image_set["labels"])
    with tqdm(total=total, desc=f"{source} maps", unit="img", leave=False, disable=not progress) as bar:
        for start, end, x, y in batches:
            yield start, end, fn(model, x, y, **options).detach()
            bar.update(end - start)


def stored_attention_maps(
    source: str,
    model: nn.Module,
    image_set: Mapping[str, np.ndarray],
    device: torch.device | str,
    batch_size: int = 256,
    progress: bool = False,
    **options: Any,
) -> np.ndarray:
    """The maps of :func:`iterate_attention_maps` as stored uint8 ``[N, H, W]`` (``round(255 * M)``), filled in place."""
    images = np.asarray(image_set["images"])
    out = np.empty(images.shape[:3], dtype=np.uint8)
    for start, end, maps in iterate_attention_maps(source, model, image_set, device, batch_size, progress, **options):
        out[start:end] = quantize_maps(maps).cpu().numpy()
    return out


@register_attribution("gradcam")
def _gradcam(model: ImageClassifier, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The project's Grad-CAM (:func:`dhat.attention.gradcam.grad_cam`) on the last conv feature map."""
    with batchnorm_mode(model, "eval"):
        return grad_cam(model, images, labels)


class _FeaturesModule(nn.Module):
    """``model.features`` as a module, for models whose feature map is not one submodule's output."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)


class _SplitClassifier(nn.Module):
    """``head(features(x))`` with ``features`` a submodule that captum can hook."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.features = _FeaturesModule(model)
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.head(self.features(x))


def _feature_layer(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """``(forward_func, layer)`` for captum, where ``layer``'s output is ``model.features(x)``.

    For :class:`ImageClassifier` that is the backbone (``features`` only normalises the
    pixels first); a wrapper with its own ``features``/``head`` (e.g. FSR) is split into
    a features submodule and the head.
    """
    if isinstance(model, ImageClassifier):
        return model, model.backbone
    if not (callable(getattr(model, "features", None)) and callable(getattr(model, "head", None))):
        raise TypeError(f"Grad-CAM needs a model with features(x) and head(feature_map); got {type(model).__name__}")
    split = _SplitClassifier(model)
    return split, split.features


@register_attribution("captum_gradcam")
def _captum_gradcam(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """captum's ``LayerGradCam`` (ReLU) on the ``features`` layer, bilinearly upsampled to the image size."""
    from captum.attr import LayerAttribution, LayerGradCam  # noqa: PLC0415 - captum is slow to import

    forward_func, layer = _feature_layer(model)
    with batchnorm_mode(model, "eval"), torch.enable_grad():
        cam = LayerGradCam(forward_func, layer).attribute(images.detach(), target=labels, relu_attributions=True)
    cam = LayerAttribution.interpolate(cam.detach(), tuple(images.shape[-2:]), interpolate_mode="bilinear")
    return min_max_normalise(cam.squeeze(1))


def _resolve_baseline(images: torch.Tensor, baseline: Baseline) -> torch.Tensor:
    """The baseline images ``[N, C, H, W]``: black, the per-channel mean of ``images``, or a given tensor.

    A tensor is broadcast to the images' shape (``[C, 1, 1]`` per-channel values, ``[C, H, W]`` one image, ...).
    """
    if isinstance(baseline, torch.Tensor):
        return baseline.detach().to(images).expand_as(images)
    if baseline == "black":
        return torch.zeros_like(images)
    if baseline == "mean":
        return images.detach().mean(dim=(0, 2, 3), keepdim=True).expand_as(images)
    raise ValueError(f"integrated_gradients baseline must be 'black', 'mean' or a tensor, got {baseline!r}")


def integrated_gradients_attributions(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    n_steps: int = 32,
    baseline: Baseline = "black",
    internal_batch_size: int | None = None,
) -> torch.Tensor:
    """Raw integrated-gradients attributions ``[N, C, H, W]`` of the label logit (captum, Gauss-Legendre steps).

    Completeness: each image's attributions sum to ``f(x) - f(baseline)`` up to the
    integration error. ``baseline`` is ``"black"`` (zeros), ``"mean"`` (the per-channel
    mean of ``images``) or a tensor broadcastable to the images.
    """
    from captum.attr import IntegratedGradients  # noqa: PLC0415 - captum is slow to import

    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"integrated_gradients n_steps must be a positive integer, got {n_steps!r}")
    if internal_batch_size is not None and (
        isinstance(internal_batch_size, bool) or not isinstance(internal_batch_size, int) or internal_batch_size < 1
    ):
        raise ValueError(
            f"integrated_gradients internal_batch_size must be a positive integer or None, got {internal_batch_size!r}"
        )
    inputs = images.detach()
    with batchnorm_mode(model, "eval"), torch.enable_grad():
        attributions = IntegratedGradients(model).attribute(
            inputs,
            baselines=_resolve_baseline(inputs, baseline),
            target=labels,
            n_steps=n_steps,
            internal_batch_size=internal_batch_size,
        )
    return attributions.detach()


def _set_mean_baseline(channel_mean: Callable[[], torch.Tensor], options: dict[str, Any]) -> dict[str, Any]:
    """Replace ``baseline="mean"`` by the whole set's per-channel mean, so batches share one baseline."""
    if isinstance(options.get("baseline"), str) and options["baseline"] == "mean":
        options["baseline"] = channel_mean()
    return options


@register_attribution("integrated_gradients", prepare=_set_mean_baseline)
def _integrated_gradients(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    n_steps: int = 32,
    baseline: Baseline = "black",
    internal_batch_size: int | None = None,
) -> torch.Tensor:
    """``|sum_c IG_c|``: each pixel's net integrated-gradients attribution, made absolute.

    Channels are summed before the absolute value (captum's ``visualize_image_attr``
    convention), so a pixel's map value is the magnitude of its contribution to
    ``f(x) - f(baseline)``. See :func:`integrated_gradients_attributions`.
    """
    attributions = integrated_gradients_attributions(
        model, images, labels, n_steps=n_steps, baseline=baseline, internal_batch_size=internal_batch_size
    )
    return min_max_normalise(attributions.sum(dim=1).abs())
