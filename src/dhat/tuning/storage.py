"""Where the trials live: Optuna's RDB storage (SQLite by default), a server database, or the journal file.

- **SQLite** (``tune.storage.url: null``): one file under the run's data folder, for one
  process on one machine at a time. A run that was killed continues from it.
- **A server database** (``postgresql://...``, ``mysql+pymysql://...``): several processes
  on several machines work on one study; each trial's heartbeat tells the others when a
  worker died, and its trial is queued again.
- **The journal file** (``journal:<file>``): several processes on one machine (or a file
  system with working file locks); no heartbeat, so set ``single_worker: false`` and clean
  up after a crash by rerunning with one worker.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError

from dhat.tuning.settings import StorageSettings

__all__ = ["JOURNAL_PREFIX", "RETRY_OF", "INTERRUPTED", "open_storage", "storage_label", "requeue_interrupted"]

logger = logging.getLogger(__name__)

#: ``tune.storage.url`` prefix of Optuna's journal file storage.
JOURNAL_PREFIX = "journal:"
#: User attribute of a trial queued again after an interruption: the number of the trial it repeats.
RETRY_OF = "retry_of"
#: User attribute of a trial that was cut off (failed when the next run found it running).
INTERRUPTED = "interrupted"


def storage_label(settings: StorageSettings, default_file: str | Path) -> str:
    """The URL the settings resolve to (the SQLite file of ``default_file`` when ``url`` is null)."""
    if settings.url is not None:
        return settings.url
    return f"sqlite:///{Path(default_file).resolve().as_posix()}"


def open_storage(settings: StorageSettings, default_file: str | Path) -> BaseStorage:
    """The storage ``tune.storage`` names; the SQLite file's folder is created when needed.

    Raises:
        ValueError: naming ``tune.storage.url`` when the URL cannot be opened.
    """
    url = storage_label(settings, default_file)
    if url.startswith(JOURNAL_PREFIX):
        path = Path(url.removeprefix(JOURNAL_PREFIX))
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend  # noqa: PLC0415

        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if settings.url is None:
        Path(default_file).parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():  # Optuna marks the heartbeat and its retry callback experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                url,
                heartbeat_interval=settings.heartbeat_seconds,
                grace_period=2 * settings.heartbeat_seconds,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
            )
    except (ImportError, ValueError, SQLAlchemyError) as error:  # a bad URL, a missing driver, a server down
        raise ValueError(f"tune.storage.url={url!r} could not be opened ({error}); give an SQLAlchemy URL "
                         f"(sqlite:///file.db, postgresql://user@host/db), {JOURNAL_PREFIX}<file>, or null for the "
                         "project's SQLite file") from error


def requeue_interrupted(study: optuna.Study, storage: BaseStorage) -> list[int]:
    """Fail every trial still marked running and queue its values again; returns the failed trials' numbers.

    Only for a study this process alone works on (``tune.storage.single_worker``): a
    trial that is running when the run starts was cut off by a crash or a kill. The retry
    keeps the sampled values; the trials after it are sampled afresh (:func:`dhat.tuning.search.trial_sampler`).
    The failed trial is marked :data:`INTERRUPTED`: when it stopped running is not known (its end
    time is when this run found it), so its time is not counted as the search's.
    """
    study_id = storage.get_study_id_from_name(study.study_name)
    interrupted = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in interrupted:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_user_attr(trial_id, INTERRUPTED, True)
        storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        original = trial.user_attrs.get(RETRY_OF, trial.number)
        study.enqueue_trial(trial.params, user_attrs={RETRY_OF: original}, skip_if_exists=False)
        logger.warning("%s: trial %d was interrupted; failed it and queued its values again", study.study_name,
                       trial.number)
    return [t.number for t in interrupted]
