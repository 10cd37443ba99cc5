"""Nodes of the ``tune`` pipeline: per (protocol, method) search, choice and check; per protocol a table and figures.

A unit's namespace is ``tune_<protocol>.<method>``; its name reaches the nodes through the
catalog (``tune_{protocol}.{method}.unit``), so the protocol and method live in the
namespace only. No node of a unit reads the test split.
"""

from __future__ import annotations

import logging
from typing import Any

import matplotlib.pyplot as plt
import optuna
import pandas as pd

from dhat.evaluation.sections import EvaluationSettings
from dhat.tuning import TrialData, TuneSettings, TuningUnit, validation_split
from dhat.tuning.report import chosen_table, progress_figure, tradeoff_figure, tuning_markdown
from dhat.tuning.search import trials_table

logger = logging.getLogger(__name__)

#: The keyword inputs every unit node takes besides its own (the pipeline maps them to datasets and parameters).
DATA_KEYS = ("train_set", "val_set", "val_variants", "attention_masks", "dataset_info", "model", "training", "device",
             "tune_storage")


def _unit(unit: str, tune: dict[str, Any], method: dict[str, Any], data: dict[str, Any]) -> TuningUnit:
    missing = sorted(set(DATA_KEYS) - set(data))
    if missing:
        raise TypeError(f"a tune node needs the inputs {', '.join(missing)} as keywords")
    protocol, _, name = unit.partition(".")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the project logs one line per trial itself
    scored = validation_split(protocol, data["val_set"], data["val_variants"])
    trial_data = TrialData(data["train_set"], data["val_set"], data["attention_masks"], data["dataset_info"],
                           data["model"], data["training"], data["device"],
                           score_set=None if scored is data["val_set"] else scored)
    return TuningUnit(TuneSettings.from_dict(tune), protocol, name, method, trial_data, data["tune_storage"])


def tune_method(unit: str, tune: dict[str, Any], method: dict[str, Any], **data: Any) -> pd.DataFrame:
    """Run the unit's search until it holds ``tune.n_trials`` completed trials; every trial as a table.

    ``data``: the keywords of :data:`DATA_KEYS` (training data, the validation splits, the shared recipe,
    the device and the SQLite file). Rerunning after an interruption continues the same Optuna study.
    """
    tuning = _unit(unit, tune, method, data)
    study = tuning.search()
    return trials_table(study, tuning.protocol, tuning.method)


def choose_configuration(unit: str, tune: dict[str, Any], method: dict[str, Any], trials: pd.DataFrame,
                         **data: Any) -> dict[str, Any]:
    """Re-score the best trials of the budget with ``tune.rescore.seeds`` and choose the best mean (``trials``
    orders this node after the search)."""
    return _unit(unit, tune, method, data).choose()


def check_chosen(unit: str, tune: dict[str, Any], method: dict[str, Any], chosen: dict[str, Any],
                 evaluation: dict[str, Any], **data: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The chosen configuration's model (tuning seed) and its validation check: AutoAttack and the sanity checks."""
    checkpoint, check = _unit(unit, tune, method, data).check(chosen, EvaluationSettings.from_dict(evaluation).suite)
    return checkpoint, {**check, "chosen": chosen}


def _description(tune: dict[str, Any], protocol: str, checks: dict[str, dict[str, Any]]) -> str:
    from dhat.tuning.settings import PROTOCOLS  # noqa: PLC0415

    settings = TuneSettings.from_dict(tune)
    first = next(iter(checks.values()), {}).get("chosen", {})
    return (f"Scored on {PROTOCOLS[protocol]}. Every method: {settings.n_trials} completed trials (seeded TPE, seed "
            f"{settings.sampler.seed}, {settings.sampler.n_startup_trials} random first; no pruner), each trained "
            f"with seed {settings.seed}; objective {first.get('objective', '?')} of the selected checkpoint. The "
            f"{settings.rescore.top_k} best were trained again with seeds {list(settings.rescore.seeds)}; the best "
            "mean was chosen. The check attacks the chosen model on the same validation split (the evaluation "
            "suite, AutoAttack included) and runs the gradient-masking checks. No test image was read.")


def tabulate_tuning(protocol: str, tune: dict[str, Any], **checks: dict[str, Any]) -> tuple[pd.DataFrame, str]:
    """The protocol's chosen configurations (keywords: method namespaces) as a table and Markdown.

    Raises ``ValueError`` when the methods were not given the same completed budget.
    """
    budgets = {m: (c["chosen"]["n_trials"], len([t for t in c["chosen"]["trials"] if t["counted"]]))
               for m, c in checks.items()}
    if len({b for b in budgets.values()}) > 1:
        raise ValueError(f"protocol {protocol!r}: the methods' budgets differ {budgets}; rerun the tune pipeline so "
                         "every method completes tune.n_trials trials")
    table = chosen_table(checks)
    return table, tuning_markdown(table, protocol, _description(tune, protocol, checks))


def draw_tuning_progress(protocol: str, **checks: dict[str, Any]) -> plt.Figure:
    """Best-so-far validation score against completed trials and against wall time, a line per method."""
    return progress_figure(checks, protocol)


def draw_tuning_tradeoff(protocol: str, **checks: dict[str, Any]) -> plt.Figure:
    """Validation clean against the objective for every counted trial, the chosen one marked."""
    return tradeoff_figure(checks, protocol)
