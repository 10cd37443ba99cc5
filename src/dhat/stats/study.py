"""A multi-seed study: every method trained with several seeds, scored on the same test images.

Kedro-free aggregation of the per-(seed, method) results of the ``study`` pipeline:
accuracies as the mean over seeds with a t-interval (and the spread of the seeds),
and paired differences between methods from per-seed differences on the same seeds
and images (:mod:`dhat.intervals`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dhat.config import dataclass_from_dict
from dhat.evaluation.records import attack_names, positions_of
from dhat.evaluation.registry import header, longest
from dhat.intervals import accuracy_interval, paired_difference
from dhat.methods.catalog import PAIRED_COMPARISONS, catalog_entry, display_name, order_methods

__all__ = ["STUDY_ATTACKS", "StudySettings", "unit_key", "parse_unit_key", "nested_runs", "collect_runs", "reported_attacks", "stack_runs", "study_table",
           "study_paired_table", "study_markdown"]


@dataclass(frozen=True)
class StudySettings:
    """``study``: the training seeds and the methods of the multi-seed study (they make its namespaces).

    Attributes:
        seeds: one namespace ``study_seed<k>.<method>`` per seed and method.
        methods: method namespaces; ``None`` = the catalog groups ``core`` and ``oracle``.
        mask_model_per_seed: train the mask model once per seed (with that seed), so DHAT's
            intervals cover the mask model's randomness too; ``False`` shares one mask model
            (``mask_model.training.seed``) across the seeds.
        comparisons: the paired differences ``a - b`` to report, as ``[a, b]`` pairs of
            namespaces (``conf/base`` lists :data:`~dhat.methods.catalog.PAIRED_COMPARISONS`, the default;
            ``None`` means the same).
    """

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    methods: tuple[str, ...] | None = None
    mask_model_per_seed: bool = False
    comparisons: tuple[tuple[str, str], ...] | None = PAIRED_COMPARISONS

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None) -> StudySettings:
        values = dict(params or {})
        if values.get("comparisons") is not None:
            pairs = values["comparisons"]
            if not isinstance(pairs, Sequence) or not all(
                    isinstance(p, Sequence) and not isinstance(p, str) and len(p) == 2 for p in pairs):
                raise ValueError(f"study.comparisons must be a list of [a, b] namespace pairs (a - b), got {pairs!r}")
            for a, b in pairs:
                catalog_entry(a), catalog_entry(b)  # names an unknown namespace
            values["comparisons"] = tuple((str(a), str(b)) for a, b in pairs)
        seeds = values.get("seeds", cls.seeds)
        if (not isinstance(seeds, Sequence) or isinstance(seeds, str) or not seeds
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
            raise ValueError(f"study.seeds must be a non-empty list of non-negative integers, got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"study.seeds repeats a seed: {list(seeds)}")
        values["seeds"] = tuple(seeds)
        if values.get("methods") is not None:
            values["methods"] = tuple(values["methods"])
            for method in values["methods"]:
                catalog_entry(method)  # names the unknown namespace
        return dataclass_from_dict(cls, values, "study")


#: Attacks the study reports: clean, the strongest PGD that was run (PGD-50 by default), AutoAttack.
STUDY_ATTACKS: tuple[str, ...] = ("clean", "pgd", "autoattack")


def reported_attacks(stacked: Mapping[str, Mapping[str, np.ndarray]]) -> list[str]:
    """:data:`STUDY_ATTACKS` with ``pgd`` resolved to the longest PGD every method was scored with."""
    common = set.intersection(*(set(v) for v in stacked.values())) if stacked else set()
    pgd = longest(common, "pgd")
    names = [pgd if a == "pgd" and pgd else a for a in STUDY_ATTACKS]
    return [a for a in names if a in common]

Runs = Mapping[str, Mapping[int, Mapping[str, np.ndarray]]]


def unit_key(replicate: int | str, *parts: str) -> str:
    """The keyword a unit's output reaches an aggregation node under: ``unit_key(3, "dhat", "metrics")`` is
    ``seed3__dhat__metrics``; a mask model's ``unit_key("shared", "quality")`` is ``shared__quality``.

    Kedro passes a node's inputs as flat keywords; this and :func:`parse_unit_key` are the one place
    their format is written.
    """
    head = f"seed{replicate}" if isinstance(replicate, int) else replicate
    return "__".join((head, *parts))


def parse_unit_key(key: str) -> tuple[int | str, tuple[str, ...]]:
    """The inverse of :func:`unit_key`: ``"seed3__dhat__metrics"`` -> ``(3, ("dhat", "metrics"))``."""
    head, *parts = key.split("__")
    seed = head.removeprefix("seed")
    return (int(seed) if head.startswith("seed") and seed.isdigit() else head), tuple(parts)


def nested_runs(results: Mapping[str, Any]) -> dict[int, dict[str, dict[str, Any]]]:
    """Keywords of :func:`unit_key` ``(seed, method, kind)`` -> ``{seed: {method: {kind: value}}}``."""
    nested: dict[int, dict[str, dict[str, Any]]] = {}
    for key, value in results.items():
        seed, (method, kind) = parse_unit_key(key)
        nested.setdefault(int(seed), {}).setdefault(method, {})[kind] = value
    return nested


def collect_runs(results: Mapping[str, Any]) -> tuple[dict[tuple[int, str], Mapping[str, np.ndarray]], str]:
    """Node keywords ``seed<k>__<method>__metrics`` / ``__per_image`` -> ``{(seed, method): per-image flags}`` and
    the evaluation's description (from the first metrics)."""
    per_image: dict[tuple[int, str], Mapping[str, np.ndarray]] = {}
    description = ""
    for seed, methods in nested_runs(results).items():
        for method, kinds in methods.items():
            if "per_image" in kinds:
                per_image[(seed, method)] = kinds["per_image"]
            if not description and "metrics" in kinds:
                description = f"Evaluation: {kinds['metrics']['evaluation']['description']}."
    return per_image, description


def stack_runs(per_image: Mapping[tuple[int, str], Mapping[str, np.ndarray]]) -> dict[str, dict[str, np.ndarray]]:
    """``{(seed, method): flags}`` -> ``{method: {attack: bool [n_seeds, n_images]}}`` in seed order.

    Every run of the study must cover the same test images (checked), or nothing is paired.
    """
    methods = sorted({m for _, m in per_image})
    seeds = sorted({s for s, _ in per_image})
    stacked: dict[str, dict[str, np.ndarray]] = {}
    for method in methods:
        missing = [s for s in seeds if (s, method) not in per_image]
        if missing:
            raise ValueError(f"the study has no results for {method!r} with seed(s) {missing}")
        stacked[method] = {a: np.stack([np.asarray(per_image[(s, method)][a]) for s in seeds])
                           for a in attack_names(per_image[(seeds[0], method)])}
    attacks = {a for record in per_image.values() for a in attack_names(record)}
    for attack in attacks:
        positions = {tuple(positions_of(v, attack).tolist()) for v in per_image.values() if attack in v}
        if len(positions) != 1:
            raise ValueError(f"the study's runs were scored on different test images under {attack!r}; "
                             "re-run the study's evaluation with one evaluation configuration")
    return stacked


def study_table(stacked: Mapping[str, Mapping[str, np.ndarray]], attacks: Sequence[str] | None = None) -> pd.DataFrame:
    """Per method and attack: mean accuracy over seeds, its 95% t-interval, the seeds' sd and accuracies."""
    attacks = reported_attacks(stacked) if attacks is None else attacks
    rows: list[dict[str, Any]] = []
    for method in order_methods(list(stacked)):
        for attack in attacks:
            if attack not in stacked[method]:
                continue
            runs = stacked[method][attack]
            interval = accuracy_interval(runs)
            rows.append({
                "method": method, "Method": display_name(method), "attack": attack, "mean": interval.estimate,
                "low": interval.low, "high": interval.high, "sd": interval.sd, "n_seeds": runs.shape[0],
                "n_images": runs.shape[1], "per_seed": " ".join(f"{100 * r.mean():.1f}" for r in runs),
            })
    return pd.DataFrame(rows)


def study_paired_table(
    stacked: Mapping[str, Mapping[str, np.ndarray]], attacks: Sequence[str] | None = None,
    pairs: Sequence[tuple[str, str]] = PAIRED_COMPARISONS,
) -> pd.DataFrame:
    """``a - b`` (points) per pair and attack from per-seed differences (same seeds, same images)."""
    attacks = reported_attacks(stacked) if attacks is None else attacks
    rows: list[dict[str, Any]] = []
    for a, b in pairs:
        if a not in stacked or b not in stacked:
            continue
        for attack in attacks:
            if attack not in stacked[a] or attack not in stacked[b]:
                continue
            diff = paired_difference(stacked[a][attack], stacked[b][attack], display_name(a), display_name(b))
            rows.append({
                "comparison": f"{display_name(a)} - {display_name(b)}", "attack": attack,
                "difference": diff.interval.estimate, "low": diff.interval.low, "high": diff.interval.high,
                "half_width": diff.interval.half_width, "sd": diff.interval.sd, "verdict": diff.verdict,
            })
    return pd.DataFrame(rows)


def study_markdown(table: pd.DataFrame, paired: pd.DataFrame, description: str) -> str:
    """The study's Markdown: accuracies with intervals over seeds, then the paired differences."""
    lines = ["# Multi-seed study", "", description, ""]
    if table.empty:
        return "\n".join([*lines, "No study results yet: run `kedro run --pipelines=study`.", ""])
    wide = table.assign(cell=[f"{m:.1f} [{lo:.1f}, {hi:.1f}]" for m, lo, hi in
                              zip(table["mean"], table["low"], table["high"], strict=True)])
    pivot = wide.pivot(index="Method", columns="attack", values="cell")
    pivot = pivot.reindex([display_name(m) for m in order_methods(list(dict.fromkeys(table["method"])))])
    columns = list(dict.fromkeys(table["attack"]))
    lines += ["| Method | " + " | ".join(header(c) for c in columns) + " |", "|---|" + "---|" * len(columns)]
    lines += ["| " + name + " | " + " | ".join(str(row[c]) for c in columns) + " |" for name, row in pivot.iterrows()]
    if not paired.empty:
        lines += ["", "Paired differences (points; per-seed differences on the same images, 95% t-interval):", "",
                  "| comparison | attack | a - b | verdict |", "|---|---|---|---|"]
        lines += [f"| {r.comparison} | {header(r.attack)} | {r.difference:+.1f} [{r.low:+.1f}, {r.high:+.1f}] | {r.verdict} |"
                  for r in paired.itertuples()]
    return "\n".join([*lines, ""])
