"""How the project reads ``conf/``: the config loader's arguments, shared by Kedro's session and the pipelines.

``settings.py`` hands :data:`PROJECT_CONFIG_LOADER_ARGS` to Kedro; the pipeline builders
(:func:`dhat.pipelines.composition.configured_parameters`) read the same files with the same
arguments before a session exists, because a few lists shape the pipelines.
"""

from __future__ import annotations

from omegaconf.resolvers import oc

__all__ = ["CONF_SOURCE", "PROJECT_CONFIG_LOADER_ARGS"]

#: The configuration folder, relative to the project root.
CONF_SOURCE = "conf"

PROJECT_CONFIG_LOADER_ARGS = {
    "base_env": "base",
    # ${oc.env:NAME,default} outside credentials: conf/base/mlflow.yml honours MLFLOW_TRACKING_URI.
    "custom_resolvers": {"oc.env": oc.env},
    "default_run_env": "local",
    # Environments override only the keys they name (e.g. conf/cifar10 changes
    # data.source but keeps data.seed from conf/base).
    "merge_strategy": {"parameters": "soft"},
}
