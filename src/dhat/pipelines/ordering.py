"""Ordering a shared node after the namespaced nodes of the same run."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from kedro.pipeline import Node, Pipeline


def node_after(
    func: Callable[..., Any], inputs: list[str], outputs: str | list[str], name: str, after: list[str] | None
) -> Pipeline:
    """A one-node pipeline whose inputs are ``inputs`` plus ``after``, so it runs once those exist.

    The transfer and report nodes read their inputs from disk (whatever methods have
    results); naming this run's per-method outputs as extra inputs only orders them.
    Those names carry a namespace ("dhat.metrics") on purpose, so Kedro's warning
    about dots in dataset names does not apply here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="One or more dataset names contain")
        return Pipeline([Node(func, inputs=[*inputs, *(after or [])], outputs=outputs, name=name)])
