"""The project's Kedro session: the methods of ``train_eval`` follow the environment.

``kedro run --pipelines=train_eval`` trains the methods listed under
``train_eval.methods`` in the active environment's parameters (the CPU default
lists four; the GPU environments list the paper's full comparison). With
``--namespaces=a,b`` it trains exactly those, whether or not the environment
lists them, so any registered configuration can be run on its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kedro.framework.project import pipelines
from kedro.framework.session import KedroSession

from dhat import pipeline_registry


class DhatSession(KedroSession):
    """A ``KedroSession`` that chooses the ``train_eval`` methods before the pipelines load."""

    def run(self, *args: Any, namespaces: Iterable[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        if namespaces:
            methods = tuple(namespaces)
        else:
            selection = self._get_config_loader()["parameters"].get("train_eval", {}).get("methods")
            methods = tuple(selection) if selection else pipeline_registry.DEFAULT_TRAIN_EVAL_METHODS
        previous = pipeline_registry.train_eval_methods()
        pipeline_registry.set_train_eval_methods(methods)
        # Pipelines are built once per process and cached: rebuild them with this run's selection,
        # and restore the previous one afterwards so the choice does not leak into later use.
        pipelines.configure("dhat.pipeline_registry")
        try:
            return super().run(*args, namespaces=namespaces, **kwargs)
        finally:
            pipeline_registry.set_train_eval_methods(previous)
            pipelines.configure("dhat.pipeline_registry")
