"""Search spaces: the YAML description of what a method's tuning may change, as Optuna suggestions.

A space maps a *path* inside a method section (``<namespace>.method``) to a range or a
list of choices::

    params.lambda1: {low: 0.0, high: 4.0}          # a float, uniform
    training.lr: {low: 0.01, high: 0.2, log: true}   # a float, log-uniform
    params.inverse.eps: {choices: [2/255, 4/255]}    # a categorical value (radii as text)
    params.steps: {low: 5, high: 20, int: true}      # an integer
    params.background_share: null                    # not tuned (an environment removing a base entry)

Paths start with ``params`` (the method's hyper-parameters) or ``training`` (its
overrides of the shared recipe); a trial's values are written into a copy of the
section with :func:`apply_values`, so the tuned configuration is an ordinary method
section that trains, resumes and scores like any other.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna

__all__ = ["ROOTS", "Dimension", "parse_space", "suggest", "apply_values", "midpoint_values", "corner_values"]

#: The keys of a method section a path may start with.
ROOTS = ("params", "training")

_SPEC_KEYS = {"low", "high", "log", "int", "choices"}


@dataclass(frozen=True)
class Dimension:
    """One tuned value: a range (``low``..``high``, optionally log-scaled or integer) or a list of ``choices``."""

    path: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] | None = None

    @classmethod
    def from_spec(cls, path: str, spec: Any, section: str) -> Dimension:
        """Check one YAML entry; errors name ``<section>.<path>`` and what a valid entry looks like."""
        where = f"{section}.{path}"
        parts = path.split(".")
        if parts[0] not in ROOTS or len(parts) < 2 or not all(parts):
            raise ValueError(f"{where}: a tuned path starts with {' or '.join(ROOTS)} and names a key "
                             "(params.lambda1, training.lr, params.inverse.eps)")
        if not isinstance(spec, Mapping) or not spec or set(spec) - _SPEC_KEYS:
            raise ValueError(f"{where} must be {{low: a, high: b}} (optionally log: true, int: true) or "
                             f"{{choices: [...]}}, got {spec!r}")
        if "choices" in spec:
            choices = spec["choices"]
            if set(spec) != {"choices"} or not isinstance(choices, list | tuple) or len(choices) < 2:
                raise ValueError(f"{where}.choices must be a list of at least two values and stand alone, got {spec!r}")
            if len(set(map(repr, choices))) != len(choices):
                raise ValueError(f"{where}.choices repeats a value: {list(choices)}")
            return cls(path, choices=tuple(choices))
        if "low" not in spec or "high" not in spec:
            raise ValueError(f"{where} needs both low and high, got {dict(spec)}")
        low, high = spec["low"], spec["high"]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)):
            raise ValueError(f"{where}: low and high must be finite numbers, got {low!r} and {high!r}")
        if not low < high:
            raise ValueError(f"{where}: low ({low}) must be below high ({high})")
        log, integer = bool(spec.get("log", False)), bool(spec.get("int", False))
        if log and low <= 0:
            raise ValueError(f"{where}: a log-scaled range needs low > 0, got {low}")
        if integer and not (float(low).is_integer() and float(high).is_integer()):
            raise ValueError(f"{where}: an integer range needs whole-number bounds, got {low} and {high}")
        return cls(path, float(low), float(high), log, integer)

    def suggest(self, trial: optuna.Trial) -> Any:
        """Ask ``trial`` for this dimension's value (the Optuna parameter is named by the path)."""
        if self.choices is not None:
            return trial.suggest_categorical(self.path, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.path, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.path, self.low, self.high, log=self.log)

    def midpoint(self) -> Any:
        """A value inside the space (the first choice, or the middle of the range), for checking a space up front."""
        if self.choices is not None:
            return self.choices[0]
        middle = math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2
        return round(middle) if self.integer else middle


def parse_space(spec: Mapping[str, Any] | None, section: str) -> tuple[Dimension, ...]:
    """Every entry of a YAML space (``{path: spec}``), checked; ``section`` is its YAML location.

    An entry set to ``null`` is left out: an environment switches off a dimension of ``conf/base``
    that way (the soft merge keeps keys it does not name).
    """
    if spec is None:
        return ()
    if not isinstance(spec, Mapping):
        raise ValueError(f"{section} must map paths (params.lambda1, training.lr) to ranges or choices, got {spec!r}")
    return tuple(Dimension.from_spec(str(path), value, section) for path, value in spec.items() if value is not None)


def suggest(trial: optuna.Trial, dimensions: tuple[Dimension, ...]) -> dict[str, Any]:
    """The trial's value of every dimension, ``{path: value}``."""
    return {d.path: d.suggest(trial) for d in dimensions}


def midpoint_values(dimensions: tuple[Dimension, ...]) -> dict[str, Any]:
    """``{path: value inside the space}`` for every dimension (see :meth:`Dimension.midpoint`)."""
    return {d.path: d.midpoint() for d in dimensions}


def corner_values(dimensions: tuple[Dimension, ...]) -> list[dict[str, Any]]:
    """Value sets that together hold every choice and both bounds of every range (the others at their middle).

    Checking a method section with each of them catches a value the method refuses before the search starts.
    """
    middle = midpoint_values(dimensions)
    sets = [middle]
    for d in dimensions:
        edges = d.choices if d.choices is not None else (
            (int(d.low), int(d.high)) if d.integer else (d.low, d.high))
        sets += [{**middle, d.path: value} for value in edges]
    return sets


def apply_values(method: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the method section ``{name, params, training}`` with each ``path: value`` written into it.

    Intermediate mappings are created where the section has none (``training`` when the
    method overrides nothing of the shared recipe); a path through a value that is not a
    mapping is an error naming the path.
    """
    section = copy.deepcopy(dict(method))
    for path, value in values.items():
        *parents, key = path.split(".")
        node = section
        for i, part in enumerate(parents):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                if not isinstance(child, Mapping):
                    raise ValueError(f"cannot set {path}: {'.'.join(parents[:i + 1])} is {child!r}, not a mapping")
                child = node[part] = dict(child)
            node = child
        node[key] = value
    return section
