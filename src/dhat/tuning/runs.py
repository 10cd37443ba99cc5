"""One (protocol, method) tuning study from start to finish: open it, search, choose, check.

The Kedro nodes of the ``tune`` pipeline are one call each into this module; a script or
a notebook can call it the same way. Each study records what it was started with (the
search space, the objective, the tuning seed, the method section, the recipe and a
digest of the data); reopening it with anything else is an error, so a resumed search
never mixes trials of two set-ups.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna

from dhat.checkpoints import load_classifier
from dhat.config import resolve_device
from dhat.data.splits import take_subset
from dhat.engine.fitting import input_digest, split_method_params
from dhat.engine.resume import array_digest, fingerprint
from dhat.evaluation.config import AttackSuiteConfig
from dhat.methods import create_method
from dhat.tensors import to_device_set
from dhat.tuning.check import check_configuration
from dhat.tuning.search import (
    TrialData,
    choose,
    completed,
    counted,
    make_objective,
    parameter_importances,
    rescore_top,
    run_until_complete,
    train_and_score,
    trial_records,
    trial_sampler,
)
from dhat.tuning.settings import PROTOCOLS, TuneSettings
from dhat.tuning.space import apply_values
from dhat.tuning.storage import JOURNAL_PREFIX, open_storage, requeue_interrupted

__all__ = ["SETUP_ATTR", "TuningUnit", "validation_split"]

logger = logging.getLogger(__name__)

#: Study user attribute holding what the study was started with.
SETUP_ATTR = "setup"
_RECIPE_NOISE = ("progress", "checkpoint_every", "resume", "seed")


def validation_split(protocol: str, val_set: Mapping[str, Any], val_variants: Mapping[str, Any]) -> Mapping[str, Any]:
    """The validation split a protocol scores trials on: ``val_set``, or the decorrelated variant of it.

    Checkpoint selection always uses ``val_set``, as in the final test, so what is tuned is what is tested.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown tuning protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    if protocol == "standard":
        return val_set
    if "decorrelated" not in (val_variants or {}):
        raise ValueError("tuning protocol 'decorrelated' needs the decorrelated validation split, which only the "
                         "embedded data has (val_variants['decorrelated']); remove 'decorrelated' from tune.protocols "
                         "for this data, or rerun data_ingestion if it predates this split")
    return val_variants["decorrelated"]


@dataclasses.dataclass
class TuningUnit:
    """The tuning of one method under one protocol.

    Attributes:
        settings: the ``tune`` section.
        protocol, method: the unit (``standard``, ``dhat``).
        base_method: the method's configured ``{name, params, training}`` section; trials overwrite the tuned paths.
        data: training data and the protocol's validation split.
        storage_file: the SQLite file used when ``tune.storage.url`` is null.
    """

    settings: TuneSettings
    protocol: str
    method: str
    base_method: Mapping[str, Any]
    data: TrialData
    storage_file: str | Path

    @property
    def label(self) -> str:
        return f"{self.protocol}/{self.method}"

    @property
    def objective(self) -> str:
        return self.settings.objective_for({**self.data.training, **(self.base_method.get("training") or {})})

    def setup(self) -> dict[str, Any]:
        """What the study is started with (JSON values), compared when it is reopened.

        ``data`` holds one digest per input array, so a refusal can name the one that changed: the images and
        labels of the training, validation and scored splits, and the attention masks for a method that trains
        on them (``"unused"`` for the others, whose trials do not depend on them).
        """
        recipe = {k: v for k, v in self.data.training.items() if k not in _RECIPE_NOISE}
        record = {"space": [dataclasses.asdict(d) for d in self.settings.dimensions(self.method)],
                  "objective": self.objective, "seed": self.settings.seed, "method": dict(self.base_method),
                  "training": recipe, "model": dict(self.data.model), "data": self.data_digests(),
                  "sampler": dataclasses.asdict(self.settings.sampler)}
        return json.loads(json.dumps(record, default=str))

    def _input_digests(self) -> dict[str, Any]:
        """The full digest of each split's images and labels (a streamed set's file listing, never its pixels)."""
        sets = {"train": self.data.train_set, "val": self.data.val_set, "score": self.data.scored}
        return {f"{split}_{key}": input_digest(sets[split][key]) for split in sets for key in ("images", "labels")}

    def _masks(self) -> Any:
        return (self.data.attention_masks or {}).get("masks")

    def data_digests(self) -> dict[str, str]:
        """A short digest of each input array, the attention masks only for a method that trains on them."""
        digests = {k: v[:16] if isinstance(v, str) else fingerprint(stream=v) for k, v in self._input_digests().items()}
        digests["attention_masks"] = array_digest(self._masks())[:16] if self._needs_masks() else "unused"
        return digests

    def _needs_masks(self) -> bool:
        name, hyper, _ = split_method_params(self.base_method, f"{self.method}.method")
        return create_method(name, hyper, section=f"{self.method}.method.params").needs_masks

    def _changed(self, setup: Mapping[str, Any], stored: Mapping[str, Any]) -> tuple[list[str], bool]:
        """The set-up entries (for ``data``, the input arrays) that differ from the stored record, and whether the
        attention masks may be among them."""
        changed, masks = [], False
        for key in sorted(set(setup) | set(stored)):
            now, then = setup.get(key), stored.get(key)
            if key == "data" and isinstance(then, str):
                # A study from before per-part digests: one hash of every array, the masks included.
                if fingerprint(masks=array_digest(self._masks()), **self._input_digests()) != then:
                    changed.append("data (this study recorded one digest of all its input arrays, so which one "
                                   "changed cannot be told)")
                    masks = True
            elif key == "data" and isinstance(then, Mapping) and now != then:
                parts = sorted(k for k in set(now) | set(then) if now.get(k) != then.get(k))
                changed.append(f"data ({', '.join(parts)})")
                masks = masks or "attention_masks" in parts
            elif now != then:
                changed.append(key)
        return changed, masks

    def open(self) -> optuna.Study:
        """Create the study, or load it and check that it was started with the same set-up."""
        storage = open_storage(self.settings.storage, self.storage_file)
        sampler = optuna.samplers.TPESampler(seed=self.settings.sampler.seed,
                                             n_startup_trials=self.settings.sampler.n_startup_trials)
        name = self.settings.study_name(self.protocol, self.method)
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, direction="maximize",
                                    load_if_exists=True)
        setup, stored = self.setup(), study.user_attrs.get(SETUP_ATTR)
        if stored is None:
            study.set_user_attr(SETUP_ATTR, setup)
        else:
            self._refuse_if_changed(name, setup, stored)
        if self.settings.storage.single_worker:
            requeue_interrupted(study, storage)
        return study

    def _refuse_if_changed(self, name: str, setup: Mapping[str, Any], stored: Mapping[str, Any]) -> None:
        changed, masks = self._changed(setup, stored)
        if not changed:
            return
        hint = (" The attention masks are made on each machine by mask_precomputation, whose model training is "
                "not bit-identical across CPUs or GPUs: carry data/04_feature/attention_masks.npz with the study "
                "and run only the tune namespaces (docs/tuning.md, 'Carrying a search')." if masks else "")
        raise ValueError(
            f"the tuning study {name!r} in {self.storage_label()} was started with another {'; '.join(changed)}; "
            "its trials cannot be mixed with new ones. Restore the settings it was started with, or start a new "
            f"search in another storage (tune.storage.url) or after deleting that file.{hint}")

    def storage_label(self) -> str:
        """The storage's kind, for messages and results (never the machine's paths)."""
        url = self.settings.storage.url
        if url is None:
            return "the project's SQLite file (catalog entry tune_storage)"
        return "a journal file" if url.startswith(JOURNAL_PREFIX) else f"the database {url.split('://')[0]}://..."

    def search(self) -> optuna.Study:
        """Run trials until the study holds ``tune.n_trials`` completed ones."""
        study = self.open()
        objective = make_objective(self.data, self.base_method, self.settings.dimensions(self.method),
                                   self.settings.seed, self.objective, self.label)
        sampler = self.settings.sampler
        ran = run_until_complete(study, objective, self.settings.n_trials,
                                 progress=bool(self.data.training.get("progress", True)),
                                 sampler=lambda number: trial_sampler(sampler.seed, number, sampler.n_startup_trials))
        logger.info("%s: %d trials run now, %d completed in all", self.label, ran, len(completed(study)))
        return study

    def choose(self) -> dict[str, Any]:
        """Re-score the best trials with more seeds and choose the best mean; the chosen section and the evidence."""
        study = self.open()
        trials = counted(study, self.settings.n_trials)
        rescore = self.settings.rescore

        def score(values: Mapping[str, Any], seed: int) -> float:
            return train_and_score(self.data, apply_values(self.base_method, values), seed, self.objective,
                                   f"{self.label} re-score seed {seed}").value

        rescored = rescore_top(study, trials, score, rescore.top_k, rescore.seeds)
        winner = choose(rescored)
        logger.info("%s: chose trial %d (mean %s %.2f over %d runs)", self.label, winner["trial"], self.objective,
                    winner["mean"], 1 + len(rescore.seeds))
        return {
            "protocol": self.protocol, "method": self.method, "objective": self.objective,
            "n_trials": self.settings.n_trials, "completed_trials": len(completed(study)), "trial": winner["trial"],
            "values": dict(winner["params"]), "section": apply_values(self.base_method, winner["params"]),
            "rescored": [{**r, "scores": {str(k): v for k, v in r["scores"].items()}} for r in rescored],
            "rescore_seeds": list(rescore.seeds), "importances": parameter_importances(study, trials),
            "storage": self.storage_label(), "trials": trial_records(study, {t.number for t in trials}),
        }

    def check(self, chosen: Mapping[str, Any], suite: AttackSuiteConfig) -> tuple[dict[str, Any], dict[str, Any]]:
        """Train the chosen section with the tuning seed and attack it on the validation split (AutoAttack, sanity)."""
        result = train_and_score(self.data, chosen["section"], self.settings.seed, self.objective,
                                 f"{self.label} chosen")
        device = resolve_device(self.data.device)
        model = load_classifier(result.checkpoint, device)
        images = self.data.scored
        if self.settings.check_n is not None and self.settings.check_n < len(images["labels"]):
            images = take_subset(images, self.settings.check_n, seed=0)
        val = to_device_set(images, device, name=f"{self.protocol} validation split", bound="tune.check_n")
        report = check_configuration(model, val.float_images(), val.labels, suite, self.label)
        trial_value = next((r["value"] for r in chosen["rescored"] if r["trial"] == chosen["trial"]), None)
        if trial_value is not None and abs(result.value - trial_value) > 1e-6:
            logger.warning("%s: the chosen configuration retrained with the tuning seed scores %.2f, its trial scored "
                           "%.2f: the trial ran on other hardware (a carried search), or training is not reproducible on this "
                           "device, and then the trial scores carry that noise too",
                           self.label, result.value, trial_value)
        return result.checkpoint, {"protocol": self.protocol, "method": self.method, "trial": chosen["trial"],
                                   "objective": self.objective, "value": result.value, "trial_value": trial_value,
                                   **report}
