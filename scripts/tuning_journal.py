"""Carry a tuning search between machines or sittings: copy every Optuna study of one storage into another.

    python scripts/tuning_journal.py data/06_models/tuning/optuna.db docs/tuning_runs/optuna.journal   # export
    python scripts/tuning_journal.py docs/tuning_runs/optuna.journal data/06_models/tuning/optuna.db   # import

A storage is a SQLite file (``.db``), Optuna's journal file (any other suffix: a text log of
JSON lines) or a database URL. Every study of the source is copied with its trials (values,
parameters, states, user attributes: the set-up record and the re-scoring results the
``tune`` pipeline keeps) into the target, which must not hold a study of the same name. A trial
still marked running is copied as running; the next ``kedro run --pipelines=tune`` fails and
queues it again (``tune.storage.single_worker``), so a search carried this way loses at most
the trial that was in flight.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna
from optuna.storages import BaseStorage


def _storage(where: str, *, source: bool) -> BaseStorage | str:
    if "://" in where:
        return where
    path = Path(where)
    if source and not path.is_file():
        raise SystemExit(f"{where}: no such storage file to copy from (an Optuna SQLite .db or journal file)")
    path.parent.mkdir(parents=True, exist_ok=True)  # a target under a data folder that a fresh checkout lacks
    if path.suffix == ".db":
        return f"sqlite:///{path}"
    from optuna.storages.journal import JournalFileBackend  # noqa: PLC0415

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source")
    parser.add_argument("target")
    args = parser.parse_args()
    source, target = _storage(args.source, source=True), _storage(args.target, source=False)
    summaries = optuna.get_all_study_summaries(source)
    existing = {s.study_name for s in optuna.get_all_study_summaries(target)}
    clash = sorted(s.study_name for s in summaries if s.study_name in existing)
    if clash:
        raise SystemExit(f"{args.target} already holds the studies {', '.join(clash)}; copy into an empty storage")
    for summary in summaries:
        optuna.copy_study(from_study_name=summary.study_name, from_storage=source, to_storage=target)
        study = optuna.load_study(study_name=summary.study_name, storage=target)
        states = [t.state.name for t in study.get_trials(deepcopy=False)]
        sys.stdout.write(f"{summary.study_name}: {states.count('COMPLETE')} complete, {len(states)} trials copied\n")


if __name__ == "__main__":
    main()
