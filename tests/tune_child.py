"""A tuning search in its own process, for the kill-and-resume test (``python -m tests.tune_child``).

Arguments: ``STORAGE_FILE N_TRIALS [--kill-in-trial K]``. Tunes PGD-AT's learning rate on the
tiny data of :mod:`tests.resume_child` with the SQLite file ``STORAGE_FILE``; with
``--kill-in-trial K`` the process sends itself SIGKILL while trial ``K`` trains (a crash: the
trial stays marked running in the database).
"""

from __future__ import annotations

import argparse
import os
import signal

from dhat.tuning import TrialData, TuneSettings, TuningUnit, search
from tests.resume_child import tiny_data

SETTINGS = {"methods": ["pgd_at"], "protocols": ["standard"], "baselines": [], "comparisons": [],
            "rescore": {"top_k": 2, "seeds": [101]}, "sampler": {"n_startup_trials": 2},
            "shared_space": {"training.lr": {"low": 0.01, "high": 0.2, "log": True}}}
METHOD = {"name": "pgd_at", "params": {"attack": {"steps": 2}}}
TRAINING = {"epochs": 2, "batch_size": 16, "val_steps": 2, "progress": False, "checkpoint_every": 0}


def unit(storage_file: str, n_trials: int) -> TuningUnit:
    train, val, info = tiny_data()
    data = TrialData(train, val, None, info, {"name": "small_cnn", "width": 4}, TRAINING, "cpu")
    return TuningUnit(TuneSettings.from_dict({**SETTINGS, "n_trials": n_trials}), "standard", "pgd_at", METHOD, data,
                      storage_file)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("storage")
    parser.add_argument("n_trials", type=int)
    parser.add_argument("--kill-in-trial", type=int, default=None)
    args = parser.parse_args()
    if args.kill_in_trial is not None:
        train_and_score = search.train_and_score

        def crash_in_trial(data, method, seed, objective, label):
            if label.endswith(f"trial {args.kill_in_trial}"):
                os.kill(os.getpid(), signal.SIGKILL)
            return train_and_score(data, method, seed, objective, label)

        search.train_and_score = crash_in_trial
    unit(args.storage, args.n_trials).search()


if __name__ == "__main__":
    main()
