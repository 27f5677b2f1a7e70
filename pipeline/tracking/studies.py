"""Optuna's record of a study, and what links one of its trials to the training that runs it.

A tune worker runs each trial as ``dvc exp run`` and names the trial to the train stage in the environment
(``OPTUNA_STORAGE``, which Optuna's own CLI reads too, ``PIPELINE_TUNE_STUDY``, ``PIPELINE_TUNE_TRIAL``).
The train stage then tags its MLflow run with the study and trial under the study's parent run, reports each
epoch's validation -ELBO to the trial and stops when the study's pruner says so. A plain ``dvc repro`` has
none of these variables and is untouched. Optuna is imported only where a study is in play.
"""

import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.core.errors import PipelineError
from pipeline.core.quiet import verbose

if TYPE_CHECKING:
    import optuna

STORAGE_ENV = "OPTUNA_STORAGE"
STUDY_ENV = "PIPELINE_TUNE_STUDY"
TRIAL_ENV = "PIPELINE_TUNE_TRIAL"
STUDY_TAG = "tune.study"
TRIAL_TAG = "tune.trial"
STATE_TAG = "tune.state"
PARENT_TAG = "mlflow.parentRunId"
"""MLflow's own tag: the UI nests a study's trial runs under its parent run."""
PARENT_RUN_ATTR = "mlflow_parent_run_id"
"""The study's user attribute holding its MLflow parent run, set when the study is created."""
RUN_ATTR = "mlflow_run_id"
"""The trial's user attribute naming the MLflow run of its training."""
PRUNED_ATTR = "pruned_after_epoch"
"""The trial's user attribute the train stage sets when the pruner stopped it; the worker then tells PRUNED."""
CONNECT_TIMEOUT_S = 10
SCHEMA_ATTEMPTS = 5


class StudyStorageError(PipelineError):
    """Optuna's storage cannot be reached, or does not hold the study or trial named."""


class NoSuchStudy(StudyStorageError):  # noqa: N818
    """The storage holds no study of that name."""


class TrialPruned(PipelineError):  # noqa: N818  (Optuna's own name for the same event)
    """The study's pruner stopped this trial after an epoch: its validation -ELBO trails earlier trials'."""


class TrialAbandoned(PipelineError):  # noqa: N818
    """The trial is no longer running in the study: its worker died and the heartbeat failed and retried it."""


def shown_url(url: str) -> str:
    """``url`` with any password masked, for messages."""
    if "://" not in url:
        return url
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def open_storage(url: str, heartbeat_s: int | None = None, retry: Any = None) -> "optuna.storages.BaseStorage":
    """The storage at ``url``: an SQLAlchemy URL (PostgreSQL for several hosts) as Optuna's RDB storage,
    with a heartbeat every ``heartbeat_s`` seconds and ``retry`` called for each stale trial; anything else
    is the path of a journal file (Optuna's storage for several processes on one machine).

    Raises ``StudyStorageError`` in one line when the database cannot be reached or the file not written.
    """
    import optuna

    quiet_optuna()

    try:
        if "://" in url:
            return _rdb_storage(url, heartbeat_s, retry)
        from optuna.storages.journal import JournalFileBackend

        Path(url).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(url))
    except OSError as error:
        raise StudyStorageError(f"Optuna storage {url}: {error.strerror or error}") from None
    except Exception as error:
        cause = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise StudyStorageError(f"Optuna storage {shown_url(url)} is unreachable ({cause})") from None


def _rdb_storage(url: str, heartbeat_s: int | None, retry: Any) -> "optuna.storages.RDBStorage":
    """Optuna's RDB storage; tried again when another worker is creating its tables in a new database at the
    same moment (PostgreSQL then reports a duplicate type or table)."""
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    connect = {"connect_timeout": CONNECT_TIMEOUT_S} if url.startswith("postgresql") else {}

    def storage() -> "optuna.storages.RDBStorage":
        return optuna.storages.RDBStorage(
            url, engine_kwargs={"pool_pre_ping": True, "connect_args": connect},
            heartbeat_interval=heartbeat_s, grace_period=heartbeat_s and 3 * heartbeat_s,
            heartbeat_stale_trial_callback=retry)

    for attempt in range(SCHEMA_ATTEMPTS - 1):
        try:
            return storage()
        except (IntegrityError, ProgrammingError):
            time.sleep(1.0 + attempt)
    return storage()


def quiet_optuna() -> None:
    """Optuna's INFO lines and its warnings that a feature is experimental stay off unless verbose."""
    import optuna

    if not verbose():
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def make_pruner(settings: Mapping[str, Any]) -> "optuna.pruners.BasePruner":
    """The pruner of the study's ``pruner`` settings: Optuna's median rule after ``warmup_epochs``, or none."""
    import optuna

    if settings["kind"] == "none":
        return optuna.pruners.NopPruner()
    # Steps are epochs counted from 1; Optuna prunes from step n_warmup_steps on, so epoch warmup + 1 is the first.
    return optuna.pruners.MedianPruner(n_startup_trials=settings["startup_trials"],
                                       n_warmup_steps=settings["warmup_epochs"] + 1)


@dataclass
class StudyTrial:
    """One trial of a study, seen from the training that runs it."""

    study_name: str
    number: int
    storage_url: str
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> "StudyTrial | None":
        """The trial named by the tune worker's variables, or None outside a study."""
        if not environ.get(STUDY_ENV):
            return None
        number, url = environ.get(TRIAL_ENV, ""), environ.get(STORAGE_ENV, "")
        if not number.isdigit() or not url:
            raise StudyStorageError(f"{STUDY_ENV} is set but {TRIAL_ENV} ({number!r}) or {STORAGE_ENV} is not: "
                                    "run trials with python -m pipeline tune, or unset it")
        return cls(environ[STUDY_ENV], int(number), url)

    def _study(self) -> "optuna.Study":
        if "study" not in self._cache:
            import optuna

            storage = open_storage(self.storage_url)
            try:
                summary = optuna.load_study(study_name=self.study_name, storage=storage)
                study = optuna.load_study(study_name=self.study_name, storage=storage,
                                          pruner=make_pruner(summary.user_attrs["settings"]["pruner"]))
                trial_id = storage.get_trial_id_from_study_id_trial_number(
                    storage.get_study_id_from_name(self.study_name), self.number)
            except (KeyError, optuna.exceptions.OptunaError) as error:
                raise StudyStorageError(f"no trial {self.number} of study {self.study_name!r} in "
                                        f"{shown_url(self.storage_url)} ({error})") from None
            self._cache.update(study=study, storage=storage, trial_id=trial_id)
        return self._cache["study"]

    def tags(self) -> dict[str, str]:
        """The MLflow run's tags: study, trial, and the study's parent run (the run tags its host anyway)."""
        parent = self._study().user_attrs.get(PARENT_RUN_ATTR)
        return {STUDY_TAG: self.study_name, TRIAL_TAG: str(self.number), **({PARENT_TAG: parent} if parent else {})}

    def record_run(self, run_id: str) -> None:
        """Name the training's MLflow run in the trial, so ``tune show`` lists it."""
        self._study()
        self._cache["storage"].set_trial_user_attr(self._cache["trial_id"], RUN_ATTR, run_id)

    def report(self, epoch: int, val_neg_elbo: float, last: bool) -> None:
        """Record epoch ``epoch`` (from 1) of the trial; raise ``TrialPruned`` when the pruner stops it (never
        after the ``last`` epoch) and ``TrialAbandoned`` when the study no longer counts this trial as running."""
        from optuna.trial import TrialState

        study = self._study()
        storage, trial_id = self._cache["storage"], self._cache["trial_id"]
        if storage.get_trial(trial_id).state != TrialState.RUNNING:
            raise TrialAbandoned(f"trial {self.number} of study {self.study_name!r} is no longer running (its "
                                 "worker stopped and the study retries it); this training stops")
        storage.set_trial_intermediate_value(trial_id, epoch, val_neg_elbo)
        if not last and study.pruner.prune(study, storage.get_trial(trial_id)):
            storage.set_trial_user_attr(trial_id, PRUNED_ATTR, epoch)
            raise TrialPruned(f"trial {self.number} of study {self.study_name!r} pruned after epoch {epoch}: "
                              f"val_neg_elbo {val_neg_elbo:.2f} trails the median of earlier trials")
