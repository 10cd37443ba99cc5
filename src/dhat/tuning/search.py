"""The search: trials trained and scored on validation data until every method has the same completed budget.

A trial writes its values into a copy of the method's section (:mod:`dhat.tuning.space`),
trains it with the tuning seed through :func:`dhat.engine.fitting.fit` (the same code as every
training node) and returns the validation score of the checkpoint that selection keeps.
The objective is handed a validation split and nothing else: it cannot read the test
images. :func:`run_until_complete` asks Optuna for one trial at a time until the study
holds ``n_trials`` *completed* trials, so failed and interrupted trials never count
towards the budget; :func:`rescore_top` re-trains the best few with more seeds, since one
score on a small validation split is noisy, and :func:`choose` picks the best mean.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd
import torch
from optuna.trial import TrialState
from tqdm.auto import tqdm

from dhat.checkpoints import load_classifier
from dhat.config import resolve_device
from dhat.data.loading import to_training_set
from dhat.engine.fitting import fit
from dhat.engine.recipe import TrainingConfig
from dhat.engine.training import evaluate_clean_and_pgd
from dhat.tuning.space import Dimension, apply_values, suggest
from dhat.tuning.storage import INTERRUPTED, RETRY_OF

__all__ = ["TrialData", "TrialResult", "train_and_score", "make_objective", "completed", "counted",
           "trial_sampler", "run_until_complete", "rescore_top", "choose", "trials_table", "interrupted_trials", "trial_records", "parameter_importances"]

logger = logging.getLogger(__name__)

#: User attributes every completed trial carries besides its value.
TRIAL_ATTRS = ("val_clean", "val_pgd10", "best_epoch", "seconds", "diverged_epoch")
_RESCORE_KEY = "rescore:{trial}:{seed}"


@dataclass(frozen=True)
class TrialData:
    """What a trial trains and scores on: the training data and validation splits, nothing else.

    Attributes:
        val_set: the split checkpoint selection uses while training (as in every training run).
        score_set: the split the selected checkpoint is scored on (the protocol's); ``None`` = ``val_set``,
            whose score the selection already computed.
    """

    train_set: Mapping[str, Any]
    val_set: Mapping[str, Any]
    attention_masks: Mapping[str, Any] | None
    dataset_info: Mapping[str, Any]
    model: Mapping[str, Any]
    training: Mapping[str, Any]
    device: str
    score_set: Mapping[str, Any] | None = None

    @property
    def scored(self) -> Mapping[str, Any]:
        """The split trials are scored on."""
        return self.val_set if self.score_set is None else self.score_set


@dataclass(frozen=True)
class TrialResult:
    """The selected checkpoint's validation scores, and the run's cost."""

    value: float
    val_clean: float
    val_pgd10: float
    best_epoch: int
    seconds: float
    diverged_epoch: int | None
    checkpoint: dict[str, Any]

    def attrs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in TRIAL_ATTRS}


def train_and_score(data: TrialData, method: Mapping[str, Any], seed: int, objective: str,
                    label: str) -> TrialResult:
    """Train ``method`` (a ``{name, params, training}`` section) with ``seed``; score the selected checkpoint.

    Checkpoint selection runs on ``data.val_set`` as in every training run; the selected
    checkpoint is scored on ``data.score_set`` when the protocol has its own split (the same
    clean and PGD measurement, seeded). A run whose loss is non-finite before the first epoch
    ends has no validated checkpoint: it scores 0, with ``diverged_epoch`` 1.
    """
    started = time.perf_counter()
    training = {**data.training, "seed": seed, "progress": False}
    best, _, history = fit(data.train_set, data.val_set, data.attention_masks, data.dataset_info, method, data.model,
                           training, data.device, label=label)
    epoch = int(best["metadata"]["epoch"])
    diverged = best["metadata"].get("diverged_epoch")
    rows = history.loc[history["epoch"] == epoch] if "epoch" in history else history.iloc[0:0]
    if rows.empty:
        logger.warning("%s: the loss became non-finite in the first epoch; the trial scores 0", label)
        return TrialResult(0.0, 0.0, 0.0, 0, time.perf_counter() - started, int(diverged or 1), best)
    scores = {"val_clean": float(rows.iloc[0]["val_clean"]), "val_pgd10": float(rows.iloc[0]["val_pgd10"])}
    if data.score_set is not None:
        scores = _score(best, data.score_set, {**data.training, **(method.get("training") or {})}, data.device, seed)
    return TrialResult(scores[objective], scores["val_clean"], scores["val_pgd10"], epoch,
                       time.perf_counter() - started, None if diverged is None else int(diverged), best)


def _score(checkpoint: Mapping[str, Any], image_set: Mapping[str, Any], training: Mapping[str, Any], device: str,
           seed: int) -> dict[str, float]:
    """Validation clean and PGD accuracy of ``checkpoint`` on ``image_set``, measured as checkpoint selection does."""
    config = TrainingConfig.from_dict(training, section="training")
    torch_device = resolve_device(device)
    model = load_classifier(checkpoint, torch_device)
    torch.manual_seed(seed)  # PGD's random start
    # Batch by batch, decoded per batch in stream mode (as checkpoint selection scores its validation split).
    clean, robust = evaluate_clean_and_pgd(model, to_training_set(image_set, torch_device, name="score split"),
                                           float(config.val_eps), float(config.val_step_size), config.val_steps,
                                           config.val_batch_size)
    return {"val_clean": clean, "val_pgd10": robust}


def make_objective(data: TrialData, base_method: Mapping[str, Any], dimensions: tuple[Dimension, ...], seed: int,
                   objective: str, label: str) -> Callable[[optuna.Trial], float]:
    """The Optuna objective of one method: suggest values, train with the tuning seed, return the validation score."""

    def run(trial: optuna.Trial) -> float:
        values = suggest(trial, dimensions)
        result = train_and_score(data, apply_values(base_method, values), seed, objective,
                                 f"{label} trial {trial.number}")
        for key, value in result.attrs().items():
            trial.set_user_attr(key, value)
        logger.info("%s trial %d: %s %.2f (val clean %.2f) with %s in %.0f s", label, trial.number, objective,
                    result.value, result.val_clean, _format(values), result.seconds)
        return result.value

    return run


def _format(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's completed trials, in trial order (failed and interrupted ones never count)."""
    return sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)


def counted(study: optuna.Study, n_trials: int) -> list[optuna.trial.FrozenTrial]:
    """The first ``n_trials`` completed trials: the budget every method is compared on.

    A study that ran more (a larger budget earlier) is cut back, so no method is chosen
    from more trials than another. Raises ``ValueError`` when it holds fewer.
    """
    trials = completed(study)
    if len(trials) < n_trials:
        raise ValueError(f"{study.study_name} has {len(trials)} completed trials, fewer than tune.n_trials={n_trials}; "
                         "run the tune pipeline again to finish its search")
    return trials[:n_trials]


def trial_sampler(seed: int, number: int, n_startup_trials: int) -> optuna.samplers.TPESampler:
    """TPE seeded from ``(seed, trial number)``: the values of trial ``number`` do not depend on how many times the
    search was interrupted before it, and a resumed search never re-draws the values of earlier trials."""
    state = int(np.random.SeedSequence([seed, number]).generate_state(1)[0])
    return optuna.samplers.TPESampler(seed=state, n_startup_trials=n_startup_trials)


def run_until_complete(study: optuna.Study, objective: Callable[[optuna.Trial], float], n_trials: int,
                       progress: bool = True, sampler: Callable[[int], optuna.samplers.BaseSampler] | None = None) -> int:
    """Run trials one at a time until ``study`` holds ``n_trials`` completed ones; returns how many ran now.

    A trial whose objective raises is failed by Optuna and the error propagates: a broken
    configuration stops the run rather than being retried for ever. Queued trials (the
    values of an interrupted one) run first. ``sampler(number)`` gives the sampler of the
    next trial (number = the study's trial count), e.g. :func:`trial_sampler`.
    """
    done = len(completed(study))
    ran = 0
    with tqdm(total=n_trials, initial=min(done, n_trials), desc=study.study_name, disable=not progress,
              unit="trial") as bar:
        while done < n_trials:
            if sampler is not None:
                study.sampler = sampler(len(study.trials))
            study.optimize(objective, n_trials=1, gc_after_trial=True)
            ran += 1
            now = len(completed(study))
            bar.update(now - done)
            done = now
    return ran


def rescore_top(study: optuna.Study, trials: Sequence[optuna.trial.FrozenTrial],
                score: Callable[[Mapping[str, Any], int], float], top_k: int, seeds: Sequence[int]) -> list[dict[str, Any]]:
    """Train the ``top_k`` best of ``trials`` again with each of ``seeds`` (``score(values, seed)``).

    Each score is stored in the study (a user attribute), so an interrupted re-scoring
    continues where it stopped. Returns, best trial first, ``{trial, params, value,
    scores: {seed: value}, mean}`` where the mean covers the trial's own run and the seeds.
    """
    rows = []
    for trial in sorted(trials, key=lambda t: (-float(t.value), t.number))[:top_k]:
        scores: dict[int, float] = {}
        for seed in seeds:
            key = _RESCORE_KEY.format(trial=trial.number, seed=seed)
            if key not in study.user_attrs:
                study.set_user_attr(key, float(score(trial.params, seed)))
            scores[seed] = float(study.user_attrs[key])
        values = [float(trial.value), *scores.values()]
        rows.append({"trial": trial.number, "params": dict(trial.params), "value": float(trial.value),
                     "scores": scores, "mean": sum(values) / len(values)})
    return rows


def choose(rescored: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The re-scored trial with the best mean (the better single score, then the earlier trial, among equals)."""
    finite = [r for r in rescored if math.isfinite(r["mean"])]
    if not finite:
        raise ValueError("no completed trial with a finite score to choose from; run the search first")
    return min(finite, key=lambda r: (-r["mean"], -r["value"], r["trial"]))


def trials_table(study: optuna.Study, protocol: str, method: str) -> pd.DataFrame:
    """Every trial of the study, one row each: state, value, validation scores, seconds, values (``param:<path>``).

    ``wall_seconds`` is empty for an interrupted trial (``interrupted``: when it stopped is not known)."""
    rows = []
    cut_off = interrupted_trials(study)
    for trial in study.get_trials(deepcopy=False):
        started, finished = trial.datetime_start, trial.datetime_complete
        known = started is not None and finished is not None and trial.number not in cut_off
        row = {"protocol": protocol, "method": method, "trial": trial.number, "state": trial.state.name,
               "value": trial.value, **{key: trial.user_attrs.get(key) for key in TRIAL_ATTRS},
               "retry_of": trial.user_attrs.get(RETRY_OF, trial.system_attrs.get("failed_trial")),
               "interrupted": trial.number in cut_off,
               "started": None if started is None else started.isoformat(timespec="seconds"),
               "wall_seconds": (finished - started).total_seconds() if known else None}
        row |= {f"param:{name}": value for name, value in trial.params.items()}
        rows.append(row)
    return pd.DataFrame(rows)


def interrupted_trials(study: optuna.Study) -> set[int]:
    """Numbers of the trials that were cut off: marked so when failed, or failed and queued again (by an older
    version of the search, or by another worker's heartbeat check)."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get(RETRY_OF, t.system_attrs.get("failed_trial")) for t in trials}
    return {t.number for t in trials
            if t.state == TrialState.FAIL and (t.user_attrs.get(INTERRUPTED) or t.number in retried)}


def trial_records(study: optuna.Study, budget: set[int]) -> list[dict[str, Any]]:
    """Every trial in order, for figures: ``trial``, ``state``, ``value``, ``val_clean``, ``seconds``, and
    ``counted`` (whether it is one of the completed trials of the budget, ``budget``).

    ``seconds`` is the trial's own training time, or its start-to-end time where it failed in its run. An
    interrupted trial has ``seconds`` ``None`` and ``interrupted`` true: its end time is when a later run
    found it, possibly days later, and how long it ran before it was cut off is not known.
    """
    cut_off = interrupted_trials(study)
    records = []
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        started, finished = trial.datetime_start, trial.datetime_complete
        wall = None if started is None or finished is None or trial.number in cut_off \
            else (finished - started).total_seconds()
        records.append({"trial": trial.number, "state": trial.state.name, "value": trial.value,
                        "val_clean": trial.user_attrs.get("val_clean"),
                        "seconds": trial.user_attrs.get("seconds", wall), "counted": trial.number in budget,
                        "interrupted": trial.number in cut_off})
    return records


def parameter_importances(study: optuna.Study, trials: Sequence[optuna.trial.FrozenTrial]) -> dict[str, float]:
    """Optuna's parameter importances (fANOVA) over ``trials``; empty when they cannot be computed."""
    varied = {name for name in (trials[0].params if trials else {})
              if len({repr(t.params.get(name)) for t in trials}) > 1}
    if len(trials) < 2 or not varied:
        return {}
    try:
        budget = optuna.create_study(direction=study.direction)  # in memory: the counted trials only
        budget.add_trials(list(trials))
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        importances = optuna.importance.get_param_importances(budget, evaluator=evaluator, params=sorted(varied))
    except (RuntimeError, ValueError) as error:
        logger.warning("%s: parameter importances could not be computed (%s)", study.study_name, error)
        return {}
    return {name: float(value) for name, value in importances.items() if math.isfinite(value)}
