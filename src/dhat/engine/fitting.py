"""Train one method from its parameter sections: the core behind every training node.

:func:`fit` turns the YAML sections of a method (``{name, params, training}``), the
shared model and training recipe and the data into the selected and last
checkpoints and a history table. It is plain Python: the Kedro training node, the
mask-model node and scripts call it alike.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dhat.attention.masks import LOW_COVERAGE, stored_mask_statistics
from dhat.checkpoints import build_from_spec, make_checkpoint, model_spec
from dhat.config import device_label, resolve_device
from dhat.data.external_masks import EXTERNAL_MASKS_KEY, FileMasks
from dhat.data.files import FileImages
from dhat.data.loading import to_training_set
from dhat.engine.distributed import Distributed, launch
from dhat.engine.recipe import TrainingConfig
from dhat.engine.resume import ResumeSettings, array_digest, fingerprint
from dhat.engine.training import seed_everything, train_model
from dhat.methods import MaskSettings, TrainingMethod, create_method

__all__ = ["MethodSpec", "split_method_params", "training_maps", "describe_masks", "fit"]

logger = logging.getLogger(__name__)

MethodSpec = tuple[str, dict[str, Any], dict[str, Any]]


def split_method_params(method_params: Mapping[str, Any], section: str) -> MethodSpec:
    """``{name, params, training}`` of a method namespace -> (registry name, hyper-parameters, training overrides).

    ``section`` is the YAML path (``dhat.method``) used in error messages.
    """
    if not isinstance(method_params, Mapping) or "name" not in method_params:
        raise ValueError(f"{section}.name is missing: name the training method (e.g. pgd_at, dhat)")
    unknown = set(method_params) - {"name", "params", "training"}
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(f'{section}.{k}' for k in sorted(unknown))}; use name, params, training")
    return method_params["name"], dict(method_params.get("params") or {}), dict(method_params.get("training") or {})


def training_maps(
    method: TrainingMethod,
    train_set: Mapping[str, np.ndarray],
    attention_masks: Mapping[str, np.ndarray] | None,
    label: str,
) -> np.ndarray | None:
    """The uint8 attention maps ``[N, H, W]`` a mask-needing method trains with (``None`` for other methods).

    ``gradcam`` maps come from the mask precomputation; ``true`` maps are the data's true
    foreground masks (255 = foreground); ``external`` maps are the masks of
    ``data.external_masks``, attached to the training images at ingestion. A method never
    falls back from one source to another.
    """
    settings = method.mask_settings()
    if not method.needs_masks or settings is None:
        return None
    if settings.source in ("true", "external"):
        key, what = (("masks", "true foreground masks (only the embedded data set has them)") if settings.source == "true"
                     else (EXTERNAL_MASKS_KEY, "external masks (set data.external_masks and rerun data_ingestion)"))
        if train_set.get(key) is None:
            raise ValueError(
                f"{label}: method {method.name!r} trains with mask_source {settings.source!r}, but the training data "
                f"has no {what}. Leave this method out of the run (--namespaces) or give it data that has them"
            )
        stored = train_set[key]
        return stored if isinstance(stored, FileMasks) else np.asarray(stored)  # mask files stay files (stream mode)
    if attention_masks is None or attention_masks.get("masks") is None:
        raise ValueError(
            f"method {method.name!r} ({label}) needs attention masks but none were given: "
            "run `kedro run --pipelines=mask_precomputation` (or pass attention_masks={'masks': ...})"
        )
    return np.asarray(attention_masks["masks"])


def describe_masks(
    settings: MaskSettings, maps: np.ndarray, true_masks: np.ndarray | None, label: str,
    image_size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Coverage of the background the method will use (and its IoU with the true background); warns when low.

    ``image_size`` is the training images' height and width (feature-resolution maps expand to it).
    """
    stats = stored_mask_statistics(maps if isinstance(maps, FileMasks) else np.asarray(maps), settings.rule, None if true_masks is None else np.asarray(true_masks),
                                   image_size=image_size)
    description = {"source": settings.source, **dataclasses.asdict(settings.rule), **stats}
    iou = stats["iou_true_background"]
    logger.info(
        "%s masks (%s, %s rule): %.1f%% of training pixels marked background%s", label, settings.source,
        settings.rule.rule, 100 * stats["coverage"], "" if iou is None else f", IoU with the true background {iou:.2f}",
    )
    if stats["coverage"] < LOW_COVERAGE:
        logger.warning(
            "%s: only %.1f%% of the training pixels are marked background, so the background image is mostly "
            "black and DHAT degenerates towards UIAT; raise omega or use mask_rule: quantile",
            label, 100 * stats["coverage"],
        )
    return description


#: Training keys that change how a run is shown, saved or fed, never its result: a resumable state ignores them.
_NOT_IN_FINGERPRINT = ("progress", "checkpoint_every", "resume", "loader_workers", "loader_prefetch")


def input_digest(array: Any) -> Any:
    """A data digest (resume fingerprint, tuning set-up): of the pixels in memory mode, of the file listing in stream
    mode, so a streamed set is never decoded to be digested."""
    return ("stream", array.digest()) if isinstance(array, FileImages) else array_digest(array)


def fit(
    train_set: Mapping[str, np.ndarray],
    val_set: Mapping[str, np.ndarray],
    attention_masks: Mapping[str, np.ndarray] | None,
    dataset_info: Mapping[str, Any],
    method_params: Mapping[str, Any],
    model_params: Mapping[str, Any],
    training_params: Mapping[str, Any],
    device: str,
    label: str | None = None,
    state_path: str | Path | None = None,
) -> tuple[dict[str, Any], dict[str, Any], pd.DataFrame]:
    """Train one model and return the selected and last checkpoints and the history table.

    Args:
        train_set, val_set: image sets (``images``, ``labels``, optional ``masks``).
        attention_masks: ``{"masks": uint8 [N, H, W]}`` (or float32 feature-resolution Grad-CAM
            ``[N, h, w]``, :mod:`dhat.maps`) for the training images, from the
            mask precomputation; required by methods that need masks (DHAT), ignored by the others.
        dataset_info: class count, image shape and normalisation statistics of the data.
        method_params: the method's ``{name, params, training}`` section.
        model_params, training_params: the shared ``model`` and ``training`` sections
            (``method_params["training"]`` overrides keys of the latter).
        device: ``auto``, ``cpu`` or ``cuda``.
        label: name in logs and progress bars (default: the method's registry name).
        state_path: where the resumable training state goes (``training.checkpoint_every``,
            ``training.resume``); ``None`` trains without one. A rerun with the same
            configuration and data continues from it (:mod:`dhat.engine.resume`).

    Raises:
        ValueError: for invalid parameters, naming the key, or when a method that needs
            attention masks gets none (it never falls back to other masks silently).
    """
    name, hyper, overrides = split_method_params(method_params, f"{label or 'method'}.method")
    label = label or name
    method = create_method(name, hyper, section=f"{label}.method.params")
    config = TrainingConfig.from_dict({**training_params, **overrides}, section="training")
    maps = training_maps(method, train_set, attention_masks, label)
    torch_device = resolve_device(device)
    distributed = Distributed.current()
    if config.devices > 1 and not method.supports_data_parallel:
        raise ValueError(f"{label}: method {name!r} cannot train data-parallel; set training.devices: 1 for it "
                         f"(e.g. --params {label}.method.training.devices=1)")
    if config.devices > 1 and config.sync_batchnorm and torch_device.type != "cuda":
        raise ValueError("training.sync_batchnorm works on CUDA only (PyTorch's SyncBatchNorm); set it to false on "
                         f"{torch_device.type}")
    if config.devices > 1 and isinstance(train_set.get("images"), FileImages):
        raise ValueError(f"{label}: data-parallel training (training.devices: {config.devices}) reads the training "
                         "images from memory; set data.storage: memory or training.devices: 1")
    if config.devices > 1 and distributed is None:
        # Start the workers; each runs this function again inside the process group. Rank 0's result returns.
        results = launch(fit, config.devices, torch_device.type, train_set, val_set, attention_masks, dataset_info,
                         method_params, model_params, training_params, device, label=label, state_path=state_path)
        return results[0]
    if distributed is not None and torch_device.type == "cuda":
        torch_device = torch.device("cuda", distributed.local_rank)
    loader = config.loader_settings()
    train = to_training_set(train_set, torch_device, masks=maps, name="train_set", loader=loader, seed=config.seed)
    mask_stats = None
    if maps is None:
        train.masks = None  # the set's true masks: this method trains without masks
    else:
        mask_stats = describe_masks(method.mask_settings(), maps, train_set.get("masks"), label,
                                    image_size=tuple(train_set["images"].shape[1:3]))
    val = to_training_set(val_set, torch_device, name="val_set", loader=loader, seed=config.seed)
    spec = model_spec(model_params, dataset_info)
    wrapper = method.model_wrapper()
    if wrapper:
        spec["wrapper"] = wrapper
    seed_everything(config.seed)
    model = build_from_spec(spec)
    logger.info("Training %s (%s) on %s for %d epochs", label, name, torch_device, config.epochs)
    resume = None
    if state_path is not None:
        recipe = {k: v for k, v in vars(config).items() if k not in _NOT_IN_FINGERPRINT}
        key = fingerprint(method=method.describe(), training=recipe, model=spec, device=torch_device.type,
                          data=[input_digest(a) for a in (train_set["images"], train_set["labels"], maps,
                                                     val_set["images"], val_set["labels"])])
        resume = ResumeSettings(Path(state_path), key, every=config.checkpoint_every, resume=config.resume)
    result = train_model(model, method, train, val, config, description=label, resume=resume, distributed=distributed)
    workers = "" if distributed is None else f" x {distributed.world_size} processes"
    common = {
        "label": label,
        "device": device_label(torch_device) + workers,
        "method": method.describe(),
        "training": dict(vars(config)),
        "best_epoch": result.best_epoch,
        "diverged_epoch": result.diverged_epoch,
        "weights": method.evaluated_weights_note or "trained model",
        "selected_on": config.select_on,
        "epochs": config.epochs,
        "masks": mask_stats,
        "class_names": list(dataset_info.get("class_names") or []),  # lets another data set map its classes to these
    }
    best = make_checkpoint(result.best_state, spec, checkpoint="best", epoch=result.best_epoch, **common)
    last_epoch = config.epochs if result.diverged_epoch is None else result.diverged_epoch
    last = make_checkpoint(result.last_state, spec, checkpoint="last", epoch=last_epoch, **common)
    history = pd.DataFrame(result.history)
    history.insert(0, "method", label)
    return best, last, history
