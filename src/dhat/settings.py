"""Project settings. There is no need to edit this file unless you want to change values
from the Kedro defaults. For further information, including these default values, see
https://docs.kedro.org/en/stable/configure/configuration_basics/#configuration"""

# Instantiated project hooks.
# For example, after creating a hooks.py and defining a ProjectHooks class there, do
# from dhat.hooks import ProjectHooks
# Hooks are executed in a Last-In-First-Out (LIFO) order.
from dhat.configuration import PROJECT_CONFIG_LOADER_ARGS  # noqa: E402
from dhat.hooks import HeadlessFiguresHook, ParameterValidationHook, TrainingStateCleanupHook  # noqa: E402
from dhat.tracking import MlflowTrackingHook  # noqa: E402

# MlflowTrackingHook logs into kedro-mlflow's run when the `mlflow` extra is installed (else it does nothing).
HOOKS = (ParameterValidationHook(), TrainingStateCleanupHook(), MlflowTrackingHook(), HeadlessFiguresHook())

# Installed plugins for which to disable hook auto-registration.
# DISABLE_HOOKS_FOR_PLUGINS = ("kedro-viz",)

# Class that manages storing KedroSession data.
# from kedro.framework.session.store import BaseSessionStore
# SESSION_STORE_CLASS = BaseSessionStore
# Keyword arguments to pass to the `SESSION_STORE_CLASS` constructor.
# SESSION_STORE_ARGS = {
#     "path": "./sessions"
# }

# Directory that holds configuration.
# CONF_SOURCE = "conf"

# Class that manages how configuration is loaded.
# from kedro.config import OmegaConfigLoader

# CONFIG_LOADER_CLASS = OmegaConfigLoader

# Keyword arguments to pass to the `CONFIG_LOADER_CLASS` constructor.
# The loader's arguments live with the code that reads the configuration when pipelines are built
# (dhat/configuration.py), so the two can never disagree.
CONFIG_LOADER_ARGS = PROJECT_CONFIG_LOADER_ARGS

# Class that manages Kedro's library components.
# from kedro.framework.context import KedroContext
# CONTEXT_CLASS = KedroContext

# Class that manages the Data Catalog.
# from kedro.io import DataCatalog
# DATA_CATALOG_CLASS = DataCatalog
