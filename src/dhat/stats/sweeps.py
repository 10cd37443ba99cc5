"""Parameter sweeps of one method: the sensitivity grid (paper figures 4, 5) and the mask sources (table 8).

Both train a method several times, changing one thing per run, and score every run the
same light way (clean and a few attacks on the whole test split, 95% bootstrap
intervals). The settings' defaults equal ``conf/base`` (a test keeps them equal); the
Kedro pipelines make one namespace per grid value or source from these lists.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from dhat.checkpoints import load_classifier
from dhat.config import dataclass_from_dict, resolve_device
from dhat.data.capabilities import EXTERNAL_MASKS, TRUE_MASKS
from dhat.data.splits import index_set, stratified_indices
from dhat.evaluation.config import AttackSuiteConfig
from dhat.evaluation.protocol import score_attacks
from dhat.evaluation.registry import BATCH_EXAMPLES, is_batch_attack
from dhat.evaluation.sections import EvaluationSettings
from dhat.intervals import paired_difference
from dhat.tensors import to_device_set

__all__ = [
    "DATA_MASK_SOURCES",
    "SensitivitySettings",
    "MaskSourceSettings",
    "value_token",
    "grid_value",
    "with_method_params",
    "score",
    "score_checkpoint",
    "sensitivity_table",
    "mask_source_table",
]

def _check_attacks(attacks: Sequence[str], section: str) -> tuple[str, ...]:
    """Per-batch attack names of the registry (``fgsm``, ``pgd<k>``, ``cw``, ...); AutoAttack is too slow for sweeps."""
    unknown = [a for a in attacks if not is_batch_attack(a)]
    if unknown or not attacks:
        raise ValueError(f"{section}.attacks must be a non-empty list of per-batch attacks ({BATCH_EXAMPLES}), got "
                         f"{list(attacks)}")
    return tuple(dict.fromkeys(attacks))


def _default_grid() -> dict[str, tuple[float, ...]]:
    return {"lambda1": (0.0, 0.5, 1.0, 2.0, 4.0), "lambda2": (0.0, 0.5, 1.0, 2.0, 4.0),
            "background_share": (0.2, 0.4, 0.6, 0.8)}


@dataclass(frozen=True)
class SensitivitySettings:
    """``sensitivity``: which method's hyper-parameters vary, over which values.

    Attributes:
        namespace: the method namespace whose ``<namespace>.method.params`` are varied.
        seed: training seed of every run (the same batches and initial weights for all values).
        grid: ``{parameter: values}``; each value is one training run with the other
            parameters at the method's configured values; ``[]`` leaves a parameter out.
            The mask threshold is ``background_share`` for the quantile rule (``omega`` for
            the absolute one).
        attacks: attacks scored besides clean accuracy.
    """

    namespace: str = "dhat"
    seed: int = 0
    grid: Mapping[str, tuple[float, ...]] = field(default_factory=_default_grid)
    attacks: tuple[str, ...] = ("pgd20", "cw")

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None) -> SensitivitySettings:
        values = dict(params or {})
        grid = values.get("grid", _default_grid())
        if not isinstance(grid, Mapping) or not grid:
            raise ValueError("sensitivity.grid must map parameter names to lists of values, e.g. lambda1: [0.5, 1, 2]")
        checked = {}
        for name, grid_values in grid.items():
            if grid_values is None or (isinstance(grid_values, Sequence) and not grid_values):
                continue  # an environment switches a parameter of conf/base off with [] (soft merge keeps keys)
            if not isinstance(grid_values, Sequence) or isinstance(grid_values, str):
                raise ValueError(f"sensitivity.grid.{name} must be a list of numbers (or [] to leave it out)")
            numbers = tuple(float(v) for v in grid_values)
            if len({value_token(v) for v in numbers}) != len(numbers):
                raise ValueError(f"sensitivity.grid.{name} repeats a value: {list(grid_values)}")
            checked[str(name)] = numbers
        if not checked:
            raise ValueError("sensitivity.grid leaves out every parameter; give at least one a list of values")
        values["grid"] = checked
        values["attacks"] = _check_attacks(tuple(values.get("attacks", cls.attacks)), "sensitivity")
        return dataclass_from_dict(cls, values, "sensitivity")


#: Mask sources that are the data's own masks rather than an attribution of the mask model, and what each needs.
DATA_MASK_SOURCES: dict[str, str] = {"true": TRUE_MASKS, "external": EXTERNAL_MASKS}


@dataclass(frozen=True)
class MaskSourceSettings:
    """``mask_sources``: the attention sources DHAT is trained with (paper table 8).

    Attributes:
        namespace: the method namespace trained with each source (a mask-needing method).
        seed: training seed of every run.
        sources: names among :data:`dhat.attention.attributions.ATTRIBUTIONS` and the data's own masks of
            :data:`DATA_MASK_SOURCES`: ``true`` (the data's foreground masks, where it has them) and
            ``external`` (``data.external_masks``: masks computed elsewhere, e.g. by SAM or SOLO).
        options: per-source options (``integrated_gradients: {n_steps: 32}``).
        batch_size: images per attribution pass.
        attacks: attacks scored besides clean accuracy.
    """

    namespace: str = "dhat"
    seed: int = 0
    sources: tuple[str, ...] = ("gradcam", "captum_gradcam", "integrated_gradients", "true")
    options: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: {"integrated_gradients": {"n_steps": 32, "baseline": "black"}})
    batch_size: int = 256
    attacks: tuple[str, ...] = ("pgd20", "cw")

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None) -> MaskSourceSettings:
        from dhat.attention.attributions import ATTRIBUTIONS  # noqa: PLC0415 - captum loads only where sources are used

        values = dict(params or {})
        values["sources"] = tuple(values.get("sources", cls.sources))
        for source in values["sources"]:
            if source not in DATA_MASK_SOURCES:
                ATTRIBUTIONS.get(source)  # names mask_sources.sources and the choices
        if len(set(values["sources"])) != len(values["sources"]) or not values["sources"]:
            raise ValueError(f"mask_sources.sources must list distinct sources, got {list(values['sources'])}")
        values["attacks"] = _check_attacks(tuple(values.get("attacks", cls.attacks)), "mask_sources")
        settings = dataclass_from_dict(cls, values, "mask_sources")
        unused = sorted(set(settings.options) - set(settings.sources))
        if unused:
            raise ValueError(f"mask_sources.options names source(s) {unused} that are not in mask_sources.sources")
        return settings


def value_token(value: float) -> str:
    """A grid value as a namespace-safe token: ``0.5 -> "0p5"``, ``4.0 -> "4"``, ``-1e-05 -> "m1em05"``."""
    if not math.isfinite(value):
        raise ValueError(f"grid values must be finite numbers, got {value}")
    return f"{value:g}".replace("-", "m").replace(".", "p").replace("+", "")


def grid_value(settings: SensitivitySettings, grid_point: str) -> tuple[str, float]:
    """``"lambda1=0p5"`` -> ``("lambda1", 0.5)``, checked against the run's grid."""
    parameter, _, token = grid_point.partition("=")
    values = settings.grid.get(parameter, ())
    for value in values:
        if value_token(value) == token:
            return parameter, value
    raise ValueError(
        f"the pipeline has a run for {parameter}={token}, but sensitivity.grid.{parameter} is {list(values)}: the "
        "pipeline is built from conf/base (and the KEDRO_ENV environment) when Kedro starts, so change the grid "
        "in conf/ (not with --params) and set KEDRO_ENV to the --env you run"
    )


def with_method_params(method: Mapping[str, Any], **params: Any) -> dict[str, Any]:
    """A copy of a ``<namespace>.method`` section with ``params`` overridden."""
    section = copy.deepcopy(dict(method))
    section["params"] = {**(section.get("params") or {}), **params}
    return section


def score(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, suite: AttackSuiteConfig,
          attacks: Sequence[str], seed: int = 0) -> dict[str, Any]:
    """The sweeps' light protocol: :func:`dhat.evaluation.protocol.score_attacks` (clean and ``attacks``, with
    intervals and per-image flags, JSON-ready)."""
    return score_attacks(model, images, labels, suite, attacks, seed)


def score_checkpoint(checkpoint: Mapping[str, Any], test_set: Mapping[str, np.ndarray],
                     evaluation: Mapping[str, Any], attacks: Sequence[str], device: str) -> dict[str, Any]:
    """:func:`score` of a saved checkpoint with the ``evaluation`` section's attack settings, on the test images the
    evaluation scores: every one, or its fixed class-stratified subset of ``evaluation.n_eval`` (the same for every
    run of a sweep, so runs compare paired)."""
    settings = EvaluationSettings.from_dict(evaluation)
    suite = settings.suite
    torch_device = resolve_device(device)
    n_test = len(test_set["labels"])
    if settings.n_eval is not None and settings.n_eval < n_test:
        test_set = index_set(test_set, stratified_indices(test_set["labels"], settings.n_eval, seed=settings.subset_seed))
    test = to_device_set(test_set, torch_device, name="test_set", bound="evaluation.n_eval")
    return score(load_classifier(checkpoint, torch_device), test.float_images(), test.labels, suite, attacks)


def sensitivity_table(records: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Long table ``parameter, value, attack, accuracy, low, high, n_images`` from the runs' metrics.

    With ``defaults`` (the method's configured parameter values), each run is also compared
    paired, on the same test images, with the run at its parameter's default value when the
    grid has it: ``difference``, ``difference_low``, ``difference_high`` in points (the
    interval covers the choice of images, not training noise).
    """
    defaults = defaults or {}
    base = {r["parameter"]: r for r in records
            if isinstance(defaults.get(r["parameter"]), int | float) and float(r["value"]) == float(defaults[r["parameter"]])}
    rows = []
    for r in records:
        for attack, a in r["accuracy"].items():
            row = {"parameter": r["parameter"], "value": float(r["value"]), "attack": attack, "accuracy": a["estimate"],
                   "low": a["low"], "high": a["high"], "n_images": r["n_images"],
                   "difference": None, "difference_low": None, "difference_high": None}
            reference = base.get(r["parameter"])
            if reference is not None:
                diff = paired_difference(np.asarray(r["correct"][attack], bool),
                                         np.asarray(reference["correct"][attack], bool)).interval
                row |= {"difference": diff.estimate, "difference_low": diff.low, "difference_high": diff.high}
            rows.append(row)
    columns = ["parameter", "value", "attack", "accuracy", "low", "high", "n_images", "difference", "difference_low",
               "difference_high"]
    return pd.DataFrame(rows, columns=columns).sort_values(["parameter", "value"], kind="stable", ignore_index=True)


def mask_source_table(records: Sequence[Mapping[str, Any]], reference: str = "gradcam") -> pd.DataFrame:
    """One row per source: mask coverage and IoU, map seconds, accuracy with intervals per attack and,
    where ``reference`` ran too, the paired difference to it on the same images (points, 95% interval)."""
    by_source = {r["source"]: r for r in records}
    base = by_source.get(reference)
    rows = []
    for source, record in by_source.items():
        masks = record.get("masks") or {}
        row: dict[str, Any] = {"source": source, "coverage": masks.get("coverage"),
                               "iou_true_background": masks.get("iou_true_background"),
                               "map_seconds": record["map_seconds"], "n_images": record["n_images"]}
        for attack, a in record["accuracy"].items():
            row |= {attack: a["estimate"], f"{attack} low": a["low"], f"{attack} high": a["high"]}
            if base is not None and source != reference:
                diff = paired_difference(np.asarray(record["correct"][attack]), np.asarray(base["correct"][attack]),
                                         source, reference).interval
                row |= {f"{attack} - {reference}": diff.estimate, f"{attack} - {reference} low": diff.low,
                        f"{attack} - {reference} high": diff.high}
        rows.append(row)
    return pd.DataFrame(rows)
