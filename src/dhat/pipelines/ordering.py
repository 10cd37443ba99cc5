"""Ordering a shared node after the namespaced nodes of the same run."""

from __future__ import annotations

import warnings

from kedro.pipeline import Node, Pipeline


def node_after(node: Node, after: list[str] | None) -> Pipeline:
    """``node`` with ``after`` appended to its inputs, so it runs once those datasets exist.

    The transfer and report nodes read their inputs from disk (whatever methods have
    results); naming this run's per-method outputs as extra inputs only orders them.
    Those names carry a namespace ("dhat.metrics") on purpose, so Kedro's warning
    about dots in dataset names does not apply here.
    """
    if not after:
        return Pipeline([node])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="One or more dataset names contain")
        return Pipeline([Node(node.func, inputs=[*node.inputs, *after], outputs=node.outputs, name=node.name)])
