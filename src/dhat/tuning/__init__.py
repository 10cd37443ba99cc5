"""Hyper-parameter tuning with equal budgets (Optuna): spaces, storage, the search, the choice and its checks.

Kedro-free; the ``tune`` and ``tune_test`` pipelines are thin nodes over it. See
``docs/tuning.md`` for the protocol and what each storage is safe for.
"""

from dhat.tuning.runs import TuningUnit, validation_split
from dhat.tuning.search import TrialData
from dhat.tuning.settings import PROTOCOL_NEEDS, PROTOCOLS, TuneSettings

__all__ = ["PROTOCOLS", "PROTOCOL_NEEDS", "TrialData", "TuneSettings", "TuningUnit", "validation_split"]
