"""``tune``: what the tuning pipeline searches, with which budget, and how its winners are tested.

Everything that shapes the comparison is written here before a run and checked up front:
the methods, the protocols, the number of *completed* trials (the same for every
method), the sampler's seed, the search spaces (the shared recipe's for every method,
plus each method's own), the seeds of the trials, of the re-scoring and of the final
test (three disjoint sets), and the paired comparisons of the test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dhat.config import dataclass_from_dict
from dhat.data.capabilities import DECORRELATED_VALIDATION
from dhat.engine.recipe import SELECTION_METRICS
from dhat.tuning.space import Dimension, parse_space

__all__ = ["PROTOCOLS", "PROTOCOL_NEEDS", "SamplerSettings", "RescoreSettings", "StorageSettings", "TuneSettings"]

#: Tuning protocols: the validation split each one scores trials on.
PROTOCOLS: dict[str, str] = {
    "standard": "the validation split that checkpoint selection uses (held out from the training images)",
    "decorrelated": "a validation split whose backgrounds are independent of the class, drawn like the test split",
}
#: What a protocol needs from the data (``dhat.data.capabilities``); the others need nothing more.
PROTOCOL_NEEDS: dict[str, str] = {"decorrelated": DECORRELATED_VALIDATION}


def _int_tuple(values: Any, key: str, minimum: int = 0) -> tuple[int, ...]:
    if (not isinstance(values, Sequence) or isinstance(values, str)
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in values)):
        raise ValueError(f"{key} must be a list of integers >= {minimum}, got {values!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"{key} repeats a value: {list(values)}")
    return tuple(values)


def _positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
    return value


@dataclass(frozen=True)
class SamplerSettings:
    """``tune.sampler``: Optuna's TPE sampler, seeded; the first ``n_startup_trials`` are drawn at random."""

    seed: int = 0
    n_startup_trials: int = 8

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> SamplerSettings:
        settings = dataclass_from_dict(cls, values, "tune.sampler")
        _int_tuple([settings.seed], "tune.sampler.seed")
        _positive_int(settings.n_startup_trials, "tune.sampler.n_startup_trials")
        return settings


@dataclass(frozen=True)
class RescoreSettings:
    """``tune.rescore``: the ``top_k`` trials of each method are trained again with ``seeds``; the winner has the
    best mean validation score over the trial's own run and these (a single 150-image score is too noisy)."""

    top_k: int = 3
    seeds: tuple[int, ...] = (101, 102)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> RescoreSettings:
        values = dict(values or {})
        values["seeds"] = _int_tuple(values.get("seeds", cls.seeds), "tune.rescore.seeds")
        settings = dataclass_from_dict(cls, values, "tune.rescore")
        _positive_int(settings.top_k, "tune.rescore.top_k")
        return settings


@dataclass(frozen=True)
class StorageSettings:
    """``tune.storage``: where the trials live (docs/tuning.md says which storage is safe where).

    Attributes:
        url: ``null`` = the SQLite file of the catalog entry ``tune_storage`` (one machine, one
            process at a time); an SQLAlchemy URL of a server database (``postgresql://...``,
            ``mysql+pymysql://...``) for several machines; ``journal:<file>`` for Optuna's
            journal file on one machine with several processes.
        heartbeat_seconds: RDB storages record a heartbeat of every running trial this often;
            a trial silent for twice as long is failed and queued again with the same values.
        single_worker: this run is the study's only worker, so a trial still marked running when
            it starts was interrupted: it is failed and queued again at once (no heartbeat wait).
    """

    url: str | None = None
    heartbeat_seconds: int = 60
    single_worker: bool = True

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> StorageSettings:
        settings = dataclass_from_dict(cls, values, "tune.storage")
        if settings.url is not None and (not isinstance(settings.url, str) or not settings.url.strip()):
            raise ValueError(f"tune.storage.url must be null, an SQLAlchemy URL or journal:<file>, got {settings.url!r}")
        _positive_int(settings.heartbeat_seconds, "tune.storage.heartbeat_seconds")
        return settings


@dataclass(frozen=True)
class TuneSettings:
    """``tune``: the tuning study and its test on fresh seeds.

    Attributes:
        methods: method namespaces tuned (each gets the same budget).
        protocols: among :data:`PROTOCOLS`; one Optuna study per (protocol, method).
        n_trials: completed trials per (protocol, method); failed or interrupted ones do not count.
        seed: training seed of every trial (the same batches and initial weights for all).
        objective: the validation column maximised (``val_pgd10`` or ``val_clean``) at the
            checkpoint selection keeps; ``null`` = ``training.select_on``.
        sampler, rescore, storage: see their classes.
        shared_space: the shared recipe's dimensions, tuned for every method (``training.lr``, ...).
        spaces: ``{namespace: {path: spec}}``, each method's own dimensions (:mod:`dhat.tuning.space`);
            a space of a method that ``methods`` does not list is not used.
        check_n: the winner's check (AutoAttack, sanity checks) attacks a fixed class-stratified subset of
            this many validation images; ``null`` = all of them.
        test_seeds: seeds of the final test of the chosen configurations (never a trial's or re-scoring seed).
        baselines: untuned namespaces the test trains beside the winners (the paper's DHAT settings).
        comparisons: ``[a, b]`` pairs; the test reports ``a - b`` paired over seeds and images (a pair
            naming a method that is neither tuned nor a baseline is left out of the table).
    """

    methods: tuple[str, ...] = ("pgd_at", "trades", "uiat", "dhat")
    protocols: tuple[str, ...] = ("standard", "decorrelated")
    n_trials: int = 20
    seed: int = 100
    objective: str | None = None
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    rescore: RescoreSettings = field(default_factory=RescoreSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    shared_space: Mapping[str, Any] = field(default_factory=dict)
    spaces: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    check_n: int | None = None
    test_seeds: tuple[int, ...] = tuple(range(200, 210))
    baselines: tuple[str, ...] = ("dhat_paper",)
    comparisons: tuple[tuple[str, str], ...] = (("dhat", "pgd_at"), ("dhat", "uiat"), ("dhat", "dhat_paper"))

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None) -> TuneSettings:
        from dhat.methods.catalog import catalog_entry  # noqa: PLC0415 - the catalog imports the method modules

        values = dict(params or {})
        for key in ("methods", "protocols", "baselines"):
            if key in values:
                listed = values[key]
                if not isinstance(listed, Sequence) or isinstance(listed, str) or len(set(listed)) != len(listed):
                    raise ValueError(f"tune.{key} must be a list of distinct names, got {listed!r}")
                values[key] = tuple(str(v) for v in listed)
        for key in ("test_seeds",):
            if key in values:
                values[key] = _int_tuple(values[key], f"tune.{key}")
        values["sampler"] = SamplerSettings.from_dict(values.get("sampler"))
        values["rescore"] = RescoreSettings.from_dict(values.get("rescore"))
        values["storage"] = StorageSettings.from_dict(values.get("storage"))
        if "comparisons" in values:
            pairs = values["comparisons"]
            if not isinstance(pairs, Sequence) or not all(
                    isinstance(p, Sequence) and not isinstance(p, str) and len(p) == 2 for p in pairs):
                raise ValueError(f"tune.comparisons must be a list of [a, b] namespace pairs (a - b), got {pairs!r}")
            values["comparisons"] = tuple((str(a), str(b)) for a, b in pairs)
        settings = dataclass_from_dict(cls, values, "tune")
        settings._check(catalog_entry)
        return settings

    def _check(self, catalog_entry: Any) -> None:
        if not self.methods:
            raise ValueError("tune.methods is empty; list the method namespaces to tune")
        for name in (*self.methods, *self.baselines):
            catalog_entry(name)
        unknown = [p for p in self.protocols if p not in PROTOCOLS]
        if unknown or not self.protocols:
            raise ValueError(f"tune.protocols must list some of {', '.join(PROTOCOLS)}, got {list(self.protocols)}")
        _positive_int(self.n_trials, "tune.n_trials")
        if self.check_n is not None:
            _positive_int(self.check_n, "tune.check_n")
        _int_tuple([self.seed], "tune.seed")
        if self.objective is not None and self.objective not in SELECTION_METRICS:
            raise ValueError(f"tune.objective must be null or one of {', '.join(SELECTION_METRICS)}, got {self.objective!r}")
        if not self.test_seeds:
            raise ValueError("tune.test_seeds is empty; the chosen configurations are tested on these fresh seeds")
        overlap = ({self.seed} | set(self.rescore.seeds)) & set(self.test_seeds)
        if overlap or self.seed in self.rescore.seeds:
            raise ValueError(f"tune.seed, tune.rescore.seeds and tune.test_seeds must be disjoint (the test must use "
                             f"fresh seeds); seed {self.seed}, rescore {list(self.rescore.seeds)}, test "
                             f"{list(self.test_seeds)}")
        both = sorted(set(self.methods) & set(self.baselines))
        if both:
            raise ValueError(f"tune.methods and tune.baselines both list {both}; a namespace is either tuned or an "
                             "untuned baseline")
        for a, b in self.comparisons:
            catalog_entry(a), catalog_entry(b)  # names a misspelt namespace; pairs outside the run are skipped
        for method in self.methods:
            paths = [d.path for d in self.dimensions(method)]
            if len(set(paths)) != len(paths):
                raise ValueError(f"tune.spaces.{method} repeats a path of tune.shared_space: {paths}")

    def dimensions(self, method: str) -> tuple[Dimension, ...]:
        """The shared recipe's dimensions, then the method's own."""
        return (parse_space(self.shared_space, "tune.shared_space")
                + parse_space(self.spaces.get(method), f"tune.spaces.{method}"))

    def objective_for(self, training: Mapping[str, Any]) -> str:
        """The maximised validation column: ``objective``, or the recipe's ``select_on``."""
        return self.objective or str(training.get("select_on", "val_pgd10"))

    def study_name(self, protocol: str, method: str) -> str:
        """The Optuna study of one (protocol, method) in the storage."""
        return f"{protocol}__{method}"
