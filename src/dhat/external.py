"""Outside models scored with the project's protocol: a checkpoint or timm weights in, the same metrics out.

``external_models`` in ``conf/`` maps a name to a model the user brings, described as the
``mask_model`` section describes a pre-trained mask model (:mod:`dhat.attention.reference_model`):

- ``checkpoint: <file>``: a checkpoint this project wrote, or a plain state dict of one of its
  architectures (``model: {name: ...}``; ``normalization: {mean, std}`` when the file has none);
- ``pretrained: <timm name>`` with ``checkpoint: <weights file>`` (or timm's hub): any timm CNN
  whose head is global pooling + linear, with its own input normalisation;
- ``class_map``: the data's class names to the model's classes, where they differ.

The files load without running code (``weights_only``, safetensors). Each name becomes a method
namespace of the ``evaluate_external`` pipeline, so its metrics, per-image record and Grad-CAM
examples land beside the trained methods' and the report shows it among them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dhat.attention.reference_model import MaskModelSettings, load_mask_model
from dhat.methods.catalog import METHOD_CATALOG

__all__ = ["external_settings", "load_external_model"]


def external_settings(params: Mapping[str, Any] | None) -> dict[str, MaskModelSettings]:
    """``external_models``, checked: ``{name: settings}``; errors name the key.

    A name may not be a method namespace of the catalog (its outputs would overwrite that
    method's), and every entry must load a model (``checkpoint`` or ``pretrained``).
    """
    entries = dict(params or {})
    taken = {e.namespace for e in METHOD_CATALOG}
    checked = {}
    for name, entry in entries.items():
        section = f"external_models.{name}"
        if not str(name).isidentifier() or name in taken:
            raise ValueError(f"{section}: the name must be a new identifier (it names the outputs' folder), not a "
                             f"method namespace of the catalog ({', '.join(sorted(taken))})")
        settings = MaskModelSettings.from_dict(entry, section=section)
        if not settings.loads:
            raise ValueError(f"{section} names no model: set checkpoint (a file) or pretrained (a timm name)")
        if settings.input_size is not None:
            raise ValueError(f"{section}.input_size: outside models are scored at the data's own resolution; "
                             "resize the data instead (data.image_size)")
        checked[str(name)] = settings
    return checked


def load_external_model(name: str, entry: Mapping[str, Any], dataset_info: Mapping[str, Any]) -> dict[str, Any]:
    """The outside model ``name`` as a project checkpoint whose logits are the data's classes."""
    settings = external_settings({name: entry})[name]
    return load_mask_model(settings, dataset_info, label=name)
