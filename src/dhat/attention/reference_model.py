"""DHAT's reference (mask) model: trained here, or loaded pre-trained, and prepared for attention maps.

The paper computes its masks with "a pre-trained ResNet-18 under simple training". The
``mask_model`` section either trains one (the default), or loads one instead:

- ``checkpoint: <file>``: a checkpoint this project wrote (``model.pt``: state dict plus
  metadata, architecture and normalisation included), or a plain state dict of one of the
  project's architectures (``mask_model.model`` names it; the normalisation comes from the
  state dict's ``mean``/``std`` buffers or from ``mask_model.normalization``). Loaded with
  ``torch.load(weights_only=True)`` or safetensors: a file never runs code.
- ``pretrained: <timm model name>`` (e.g. ``resnet18.a1_in1k``): timm's weights, from the
  Hugging Face hub (needs internet once; they are cached) or, offline, from the file that
  ``checkpoint`` names (timm's ``pretrained_cfg_overlay``). The model keeps its own input
  normalisation (ImageNet's for ImageNet weights), and its classifier is restricted to the
  data's classes through a **class map**: the data's class names matched to the model's
  (ImageNet synsets such as ``n01440764`` or the first name of a description such as
  ``tench``), or ``class_map: {data class: model class index or name}``.

``input_size`` resizes the images (bilinear) before the mask model, for weights trained at
another resolution (224 for ImageNet weights on 32x32 CIFAR); the maps come back at the
images' own size. Either way the result is an ordinary project checkpoint whose logits are
the data's classes, so Grad-CAM's target is the true label and the mask model's accuracy
is measured like any other model's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dhat.checkpoints import build_from_spec, load_classifier, make_checkpoint
from dhat.config import dataclass_from_dict
from dhat.maps import MAP_RESOLUTIONS
from dhat.models import available_models

__all__ = [
    "MaskModelSettings",
    "ResizedInput",
    "class_indices",
    "load_mask_model",
    "map_model",
    "read_state_file",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MaskModelSettings:
    """The ``mask_model`` section (see the module docstring); defaults equal ``conf/base``.

    Attributes:
        model, training: architecture and recipe when the mask model is trained here.
        batch_size: images per attention-map pass.
        iou_thresholds: thresholds of the reported IoU with true foregrounds (where known).
        checkpoint: a checkpoint or state-dict file to load instead of training.
        pretrained: a timm model name whose weights to load instead of training.
        class_map: data class name -> the model's class (index or name); ``None`` matches names.
        normalization: ``{mean, std}`` of a plain state dict that carries none.
        input_size: resize images to this side before the mask model (``None``: as they are).
        map_resolution: ``image`` stores each Grad-CAM map upsampled to the image (uint8 per pixel);
            ``feature`` stores it at the feature map's own resolution (float32, 7x7 for a ResNet on
            224 px), expanded per batch on the device (:mod:`dhat.maps`).
    """

    model: Mapping[str, Any] = field(default_factory=lambda: {"name": "small_cnn", "width": 16})
    training: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int = 256
    iou_thresholds: tuple[float, ...] = (0.1, 0.3, 0.5)
    checkpoint: str | None = None
    pretrained: str | None = None
    class_map: Mapping[str, int | str] | None = None
    normalization: Mapping[str, Sequence[float]] | None = None
    input_size: int | None = None
    map_resolution: str = "image"

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None, section: str = "mask_model") -> MaskModelSettings:
        """Validate the section; errors name the key and the fix."""
        values = dict(params or {})
        if "iou_thresholds" in values:
            values["iou_thresholds"] = tuple(float(t) for t in values["iou_thresholds"] or ())
        settings = dataclass_from_dict(cls, values, section)
        if isinstance(settings.batch_size, bool) or not isinstance(settings.batch_size, int) or settings.batch_size < 1:
            raise ValueError(f"{section}.batch_size must be a positive integer, got {settings.batch_size!r}")
        if settings.map_resolution not in MAP_RESOLUTIONS:
            raise ValueError(f"{section}.map_resolution must be one of {', '.join(MAP_RESOLUTIONS)}, got "
                             f"{settings.map_resolution!r}")
        size = settings.input_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 8):
            raise ValueError(f"{section}.input_size must be an integer >= 8 or null (the images' size), got {size!r}")
        if settings.checkpoint is not None and not Path(str(settings.checkpoint)).is_file():
            raise ValueError(f"{section}.checkpoint={settings.checkpoint!r} is not a file; give the path of a checkpoint "
                             "(.pt/.pth/.safetensors) or null to train the mask model")
        if settings.pretrained is not None and (not isinstance(settings.pretrained, str) or not settings.pretrained):
            raise ValueError(f"{section}.pretrained must be a timm model name (e.g. resnet18.a1_in1k) or null")
        if settings.class_map is not None and not isinstance(settings.class_map, Mapping):
            raise ValueError(f"{section}.class_map must map data class names to the model's classes, "
                             f"e.g. {{cat: 281}}, got {settings.class_map!r}")
        if settings.normalization is not None and (
                not isinstance(settings.normalization, Mapping) or set(settings.normalization) != {"mean", "std"}):
            raise ValueError(f"{section}.normalization must be {{mean: [...], std: [...]}} (per channel, in [0, 1] units)")
        return settings

    @property
    def loads(self) -> bool:
        """Whether the mask model is loaded (``checkpoint`` or ``pretrained``) rather than trained."""
        return bool(self.checkpoint or self.pretrained)


def read_state_file(path: str | Path) -> Mapping[str, Any]:
    """A checkpoint or state dict from ``path`` without running code (safetensors, or ``torch.load(weights_only=True)``).

    Raises:
        ValueError: naming the file when it cannot be read as weights.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file  # noqa: PLC0415 - a timm dependency, imported where used

            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated file, a pickled module, another format
        raise ValueError(f"mask_model.checkpoint={str(path)!r} cannot be read as weights ({error}); give a checkpoint "
                         "this project wrote, a state dict saved with torch.save, or a .safetensors file") from error


def _match_name(name: str, model_names: Sequence[str], descriptions: Sequence[str] | None) -> int | None:
    """The model class called ``name``: exactly, or (ImageNet) the first words of its description."""
    lowered = name.strip().lower()
    for i, candidate in enumerate(model_names):
        if candidate.lower() == lowered:
            return i
    for i, text in enumerate(descriptions or ()):
        synonyms = [s.strip().lower() for s in text.split(",")]
        if lowered in synonyms or lowered.replace("_", " ") in synonyms:
            return i
    return None


def class_indices(data_classes: Sequence[str], model_classes: Sequence[str] | None, num_model_classes: int,
                  class_map: Mapping[str, int | str] | None, descriptions: Sequence[str] | None = None) -> list[int]:
    """For each data class (in label order), the index of the model class that scores it.

    Raises:
        ValueError: naming ``mask_model.class_map`` and the classes that could not be matched.
    """
    if class_map is not None:
        missing = [c for c in data_classes if c not in class_map]
        if missing:
            raise ValueError(f"mask_model.class_map has no entry for the data's class(es) {missing}; map every class")
        indices = []
        for name in data_classes:
            target = class_map[name]
            if isinstance(target, str):
                found = None if model_classes is None else _match_name(target, model_classes, descriptions)
                if found is None:
                    raise ValueError(f"mask_model.class_map: {name} -> {target!r} is not a class name of the mask model")
                indices.append(found)
            elif isinstance(target, int) and not isinstance(target, bool) and 0 <= target < num_model_classes:
                indices.append(int(target))
            else:
                raise ValueError(f"mask_model.class_map: {name} -> {target!r} must be a class index in "
                                 f"[0, {num_model_classes}) or a class name of the mask model")
        return indices
    if model_classes is not None:
        found = {c: _match_name(c, model_classes, descriptions) for c in data_classes}
        unmatched = [c for c, i in found.items() if i is None]
        if not unmatched:
            return [int(found[c]) for c in data_classes]  # type: ignore[arg-type]
        raise ValueError(
            f"the mask model's classes do not include the data's class(es) {unmatched[:10]}"
            f"{' ...' if len(unmatched) > 10 else ''}; give mask_model.class_map: {{<data class>: <model class index "
            "or name>} for every data class (ImageNet synsets such as n01440764 and names such as tench match "
            "themselves)"
        )
    if num_model_classes == len(data_classes):
        logger.info("mask model: %d classes, as many as the data's, taken in the same order", num_model_classes)
        return list(range(num_model_classes))
    raise ValueError(f"the mask model has {num_model_classes} classes and no class names, the data {len(data_classes)}; "
                     "give mask_model.class_map: {<data class>: <model class index>} for every data class")


def _restrict_classes(state: dict[str, torch.Tensor], spec: dict[str, Any], indices: list[int]) -> None:
    """Keep the classifier rows ``indices`` (in place): logits become the data's classes, in label order."""
    if indices == list(range(int(spec["num_classes"]))):
        return
    rows = torch.as_tensor(indices, dtype=torch.long)
    state["fc.weight"] = state["fc.weight"][rows].clone()
    state["fc.bias"] = state["fc.bias"][rows].clone()
    spec["num_classes"] = len(indices)


def _timm_model(name: str, weights: str | None) -> nn.Module:
    import timm  # noqa: PLC0415 - slow to import; only pre-trained mask models need it here

    overlay = {"file": str(weights)} if weights else {}
    try:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay)
    except RuntimeError as error:
        if "Unknown model" in str(error):
            raise ValueError(f"mask_model.pretrained={name!r} is not a timm model name (see timm.list_models())") from error
        raise
    except OSError as error:  # no internet, no cache
        raise ValueError(
            f"mask_model.pretrained={name!r}: timm's weights come from the Hugging Face hub, which could not be "
            f"reached ({type(error).__name__}). Download them once where there is internet (they are cached under "
            "~/.cache/huggingface), or give the weights file as well: mask_model.checkpoint: <file> with "
            f"mask_model.pretrained: {name}"
        ) from error


def _from_timm(name: str, weights: str | None) -> tuple[dict[str, torch.Tensor], dict[str, Any], list[str] | None,
                                                       list[str] | None]:
    """A timm CNN as a project classifier: ``(state, spec, class names, class descriptions)``.

    The project's classifier is normalisation + feature map + global average pool +
    linear layer; timm models whose head is exactly that (ResNets, RegNets, EfficientNets,
    ...) convert, and the conversion is checked on a random batch.
    """
    net = _timm_model(name, weights).eval()
    cfg = dict(net.pretrained_cfg)
    classifier_name = str(cfg.get("classifier") or "fc")
    classifier = net.get_classifier()
    if not isinstance(classifier, nn.Linear):
        raise ValueError(f"mask_model.pretrained={name!r}: its head is {type(classifier).__name__}, not a linear layer "
                         "after global average pooling; use a CNN such as resnet18 or resnet50")
    spec = {"name": "timm", "num_classes": int(classifier.out_features), "in_channels": int(cfg.get("input_size", (3,))[0]),
            "mean": [float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))],
            "std": [float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))],
            "options": {"variant": str(cfg.get("architecture", name.split(".", maxsplit=1)[0]))}}
    state = {f"backbone.net.{k}": v for k, v in net.state_dict().items() if not k.startswith(f"{classifier_name}.")}
    state["fc.weight"], state["fc.bias"] = classifier.weight.detach().clone(), classifier.bias.detach().clone()
    model = build_from_spec(spec).eval()
    model.load_state_dict({**model.state_dict(), **state})
    probe = torch.rand(2, spec["in_channels"], 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = net((probe - model.mean) / model.std)
        if not torch.allclose(model(probe), expected, atol=1e-4, rtol=1e-4):
            raise ValueError(f"mask_model.pretrained={name!r}: its head is not global average pooling + linear, so it "
                             "cannot serve Grad-CAM here; use a CNN such as resnet18 or resnet50")
    names = descriptions = None
    if spec["num_classes"] == 1000:
        from timm.data import ImageNetInfo  # noqa: PLC0415

        info = ImageNetInfo()
        names, descriptions = list(info.label_names()), list(info.label_descriptions())
    return model.state_dict(), spec, names, descriptions


def _from_file(settings: MaskModelSettings, dataset_info: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor],
                                                                                      dict[str, Any], list[str] | None]:
    """A project checkpoint, or a plain state dict of ``settings.model``'s architecture: ``(state, spec, class names)``."""
    loaded = read_state_file(str(settings.checkpoint))
    if isinstance(loaded, Mapping) and "state_dict" in loaded and "model" in (loaded.get("metadata") or {}):
        metadata = loaded["metadata"]
        return dict(loaded["state_dict"]), dict(metadata["model"]), metadata.get("class_names")
    state = dict(loaded)
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"mask_model.checkpoint={settings.checkpoint!r} is neither a checkpoint of this project nor a "
                         "state dict (a mapping of tensors)")
    arch = dict(settings.model)
    if arch.get("name") not in available_models():
        raise ValueError(f"mask_model.model.name must name the state dict's architecture ({', '.join(available_models())})")
    if "fc.weight" not in state:
        raise ValueError(f"mask_model.checkpoint={settings.checkpoint!r}: no 'fc.weight' in the state dict, so it is not "
                         f"a {arch['name']} of this project; for a timm state dict also set mask_model.pretrained")
    if "mean" in state and "std" in state:
        mean, std = state["mean"].flatten().tolist(), state["std"].flatten().tolist()
    elif settings.normalization is not None:
        mean, std = list(settings.normalization["mean"]), list(settings.normalization["std"])
    else:
        raise ValueError(f"mask_model.checkpoint={settings.checkpoint!r} carries no input normalisation; give "
                         "mask_model.normalization: {mean: [...], std: [...]} (the statistics it was trained with)")
    name = arch.pop("name")
    spec = {"name": name, "num_classes": int(state["fc.weight"].shape[0]),
            "in_channels": int(dataset_info["image_shape"][-1]), "mean": [float(v) for v in mean],
            "std": [float(v) for v in std], "options": arch}
    state.setdefault("mean", torch.tensor(spec["mean"]).view(1, -1, 1, 1))
    state.setdefault("std", torch.tensor(spec["std"]).view(1, -1, 1, 1))
    return state, spec, None


def load_mask_model(settings: MaskModelSettings, dataset_info: Mapping[str, Any],
                    label: str = "mask_model") -> dict[str, Any]:
    """The pre-trained model of ``settings`` as a project checkpoint whose logits are the data's classes.

    Used for the mask model and for outside models scored by ``evaluate_external`` (``label``
    names the model in logs and in the checkpoint).

    Raises:
        ValueError: naming the ``mask_model`` key to fix (file, timm name, class map, normalisation).
    """
    data_classes = [str(c) for c in dataset_info["class_names"]]
    descriptions = None
    if settings.pretrained:
        state, spec, model_classes, descriptions = _from_timm(settings.pretrained, settings.checkpoint)
        origin = {"pretrained": settings.pretrained, "weights": settings.checkpoint or "timm hub"}
    else:
        state, spec, model_classes = _from_file(settings, dataset_info)
        origin = {"checkpoint": str(settings.checkpoint)}
    indices = class_indices(data_classes, model_classes, int(spec["num_classes"]), settings.class_map, descriptions)
    _restrict_classes(state, spec, indices)
    model = build_from_spec(spec)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"mask_model: the weights do not fit the architecture {spec['name']!r} ({error}); check "
                         "mask_model.model (or mask_model.pretrained)") from error
    if model_classes is not None and indices != list(range(len(model_classes))):
        origin["class_map"] = {c: model_classes[i] for c, i in zip(data_classes, indices, strict=True)}
    logger.info("%s loaded from %s (%s, %d classes kept)", label, origin.get("pretrained") or origin["checkpoint"],
                spec["name"], len(indices))
    return make_checkpoint(model.state_dict(), spec, checkpoint="pretrained", epoch=0, label=label,
                           class_names=data_classes, origin=origin, method={"name": "natural"})


class ResizedInput(nn.Module):
    """``model`` seeing its input resized (bilinear, antialiased) to ``size x size``; ``features``/``head`` as the model's.

    Attention maps of this module are computed at the model's resolution and come back at
    the input's own size (Grad-CAM upsamples to the input; gradients flow through the resize).
    """

    def __init__(self, model: nn.Module, size: int) -> None:
        super().__init__()
        self.model = model
        self.size = int(size)

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == (self.size, self.size):
            return x
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(self._resize(x))

    def head(self, feature_map: torch.Tensor) -> torch.Tensor:
        return self.model.head(feature_map)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def map_model(checkpoint: Mapping[str, Any], settings: MaskModelSettings, image_shape: Sequence[int],
              device: torch.device | str) -> nn.Module:
    """The mask model ready for attention maps of images of ``image_shape`` (``[H, W, C]``), in eval mode.

    Raises:
        ValueError: when its last feature map would be 1x1 (every map constant), naming ``mask_model.input_size``.
    """
    model: nn.Module = load_classifier(checkpoint, device)
    if settings.input_size is not None:
        model = ResizedInput(model, settings.input_size).to(device).eval()
    height, width = int(image_shape[0]), int(image_shape[1])
    with torch.no_grad():
        feature_map = model.features(torch.zeros(1, int(image_shape[-1]), height, width, device=device))
    if feature_map.shape[-2:] == (1, 1):
        raise ValueError(f"the mask model's last feature map is 1x1 on {height}x{width} images, so every Grad-CAM map "
                         "would be constant; set mask_model.input_size (e.g. 224 for ImageNet weights) or use a model "
                         "with a stem for small images (resnet18 with cifar_stem: true)")
    return model
