"""Training methods and their registry.

Importing this package registers every built-in method; a new method is one
module plus one import line here.
"""

from dhat.methods import awp, cfa, dhat, fsr, mart, natural, pgd_at, sglr, trades, uiat  # noqa: F401  (imports register the methods)
from dhat.methods.base import (
    AttackSettings,
    Batch,
    EpochContext,
    MaskSettings,
    StepOutput,
    TrainingMethod,
    available_methods,
    create_method,
    method_class,
    register_method,
    register_model_wrapper,
    wrap_model,
)

__all__ = [
    "AttackSettings",
    "Batch",
    "EpochContext",
    "MaskSettings",
    "StepOutput",
    "TrainingMethod",
    "available_methods",
    "create_method",
    "method_class",
    "register_method",
    "register_model_wrapper",
    "wrap_model",
]
