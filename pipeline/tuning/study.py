"""A study's budget, kept exact across processes and hosts with Optuna's own queue of waiting trials.

The study's creator enqueues one WAITING trial per trial of the budget. Workers never create a trial: each one
claims a WAITING trial with the storage's atomic WAITING -> RUNNING update (what ``Study.ask`` does for
enqueued trials), so no two workers run the same trial and the study never runs more than its budget, however
many workers and hosts join. A trial whose worker died (the heartbeat went stale on the RDB storage, or its
process is gone on this host) is failed and enqueued again by Optuna's ``RetryHeartbeatStaleTrialCallback``:
the retry takes its place, so the failed one is not counted.
"""

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import optuna
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat  # the interface RDB storage implements; not re-exported
from optuna.trial import FrozenTrial, TrialState

from pipeline.core.processes import process_alive
from pipeline.tracking.studies import (
    PRUNED_ATTR,
    RUN_ATTR,
    NoSuchStudy,
    StudyStorageError,
    open_storage,
    quiet_optuna,
    shown_url,
)
from pipeline.tuning.dimensions import Choices, FloatRange
from pipeline.tuning.space import TuneSettings, TuneSettingsError, settings_from

HEARTBEAT_S = 10
"""RDB storage only: a running trial records a heartbeat this often and is stale after 3 missed ones."""
MAX_RETRIES = 3
"""A trial whose worker dies more often than this stays failed (and counts), so a trial that kills its
worker (out of memory, say) cannot hold a study forever."""
CREATION_WAIT_S = 60.0
SETTINGS_ATTR = "settings"
BUDGET_ATTR = "budget"
HOST_ATTR, PID_ATTR, FAILURE_ATTR = "host", "pid", "failure"
INHERITED_ATTRS = (RUN_ATTR, PRUNED_ATTR, FAILURE_ATTR)
"""What a trial's run records about it: blanked when a retry of it is claimed."""


def retry_callback() -> RetryHeartbeatStaleTrialCallback:
    return RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)


def make_sampler(seed: int | None) -> optuna.samplers.TPESampler:
    """Optuna's TPE, multivariate over the group-decomposed space: the sampler Optuna's docs name for a space
    whose dimensions depend on earlier choices (``when``), and the same as plain multivariate TPE without any."""
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)


def storage_for(url: str) -> optuna.storages.BaseStorage:
    """The storage at ``url`` with the heartbeat and the retry of stale trials where it supports them."""
    quiet_optuna()
    return open_storage(url, heartbeat_s=HEARTBEAT_S, retry=retry_callback())


def create_or_load(url: str, name: str, settings: TuneSettings, sampler: Any = None,
                   on_create: Callable[[optuna.Study], None] | None = None) -> optuna.Study:
    """Study ``name``: created with ``settings``, ``on_create`` (its MLflow parent run) and its budget enqueued,
    or loaded when it exists, once its creator has done all three (so a joining worker never sees half a study).

    An existing study keeps its own settings; different local ones (``trials`` aside) are refused, so a
    resumed or joined study never mixes two spaces. Raises ``TuneSettingsError`` for that.
    """
    storage = storage_for(url)
    try:
        study = optuna.create_study(study_name=name, storage=storage, direction="minimize", sampler=sampler)
    except DuplicatedStudyError:
        study = ready(load(url, name, sampler, storage))
        stored = {key: value for key, value in study.user_attrs[SETTINGS_ATTR].items() if key != "trials"}
        local = {key: value for key, value in settings.as_attrs().items() if key != "trials"}
        if stored != local:
            changed = sorted(key for key in local if stored.get(key) != local[key])
            raise TuneSettingsError(f"study {name!r} exists with other settings (they differ in {', '.join(changed)}); "
                                    "resume it with its own, or start a new study with --study") from None
        return study
    study.set_user_attr(SETTINGS_ATTR, settings.as_attrs())
    if on_create:
        on_create(study)
    top_up(study, settings.trials)  # the budget last: it tells joining workers the study is ready
    return study


def load(url: str, name: str, sampler: Any = None,
         storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """The existing study ``name``; ``NoSuchStudy`` when there is none."""
    storage = storage or storage_for(url)
    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    except KeyError:
        names = [summary.study_name for summary in optuna.get_all_study_summaries(storage, include_best_trial=False)]
        raise NoSuchStudy(f"no study {name!r} in {shown_url(url)}; studies there: "
                                f"{', '.join(names) or 'none'}") from None


def ready(study: optuna.Study) -> optuna.Study:
    """``study`` once its creator (another worker, maybe on another host, that created it a moment ago) has
    stored its settings and enqueued its budget."""
    deadline = time.monotonic() + CREATION_WAIT_S
    while BUDGET_ATTR not in study.user_attrs:
        if time.monotonic() > deadline:
            raise StudyStorageError(f"study {study.study_name!r} has no budget {CREATION_WAIT_S:.0f} s after it "
                                    "was created: its creator stopped half way; delete it (optuna delete-study) "
                                    "and start again")
        time.sleep(1.0)
    return study


def settings_of(study: optuna.Study) -> TuneSettings:
    """The settings the study was created with."""
    return settings_from(study.user_attrs[SETTINGS_ATTR])


def counted(trials: Sequence[FrozenTrial]) -> int:
    """Trials that count against the budget: all but the failed ones that a retry replaced."""
    retried = {number for trial in trials for number in trial.system_attrs.get("retry_history", ())}
    return sum(not (trial.state == TrialState.FAIL and trial.number in retried) for trial in trials)


def top_up(study: optuna.Study, budget: int) -> int:
    """Enqueue WAITING trials until ``budget`` trials count; return how many were added (0 when it is met).

    Only ``tune run`` and a study's creator call this, before their workers start.
    """
    missing = budget - counted(study.get_trials(deepcopy=False))
    for _ in range(max(missing, 0)):
        study.enqueue_trial({})
    study.set_user_attr(BUDGET_ATTR, max(budget, study.user_attrs.get(BUDGET_ATTR, 0)))
    return max(missing, 0)


def claim(study: optuna.Study) -> optuna.Trial | None:
    """Take one WAITING trial for this process (atomically: another worker can never take it too), recording
    the host and process that run it; None when no trial is waiting."""
    storage = study._storage
    study_id = storage.get_study_id_from_name(study.study_name)
    for waiting in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, waiting.number)
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                continue
        except UpdateFinishedTrialError:
            continue
        trial = optuna.Trial(study, trial_id)
        for key in INHERITED_ATTRS:  # a retry starts with the attributes of the trial it replaces
            trial.set_user_attr(key, None)
        trial.set_user_attr(HOST_ATTR, socket.gethostname())
        trial.set_user_attr(PID_ATTR, os.getpid())
        return trial
    return None


def suggest(trial: optuna.Trial, settings: TuneSettings) -> dict[str, Any]:
    """Draw the trial's point of the search space, in the space's order, skipping each dimension whose ``when``
    the fixed and already drawn params do not meet (a retried trial keeps the point it had)."""
    point: dict[str, Any] = {}
    for key, dimension in settings.space.items():
        if not dimension.applies({**settings.fixed, **point}):
            continue
        if isinstance(dimension, Choices):
            point[key] = trial.suggest_categorical(key, list(dimension.choices))
        elif isinstance(dimension, FloatRange):
            point[key] = trial.suggest_float(key, dimension.low, dimension.high, log=dimension.log)
        else:
            point[key] = trial.suggest_int(key, dimension.low, dimension.high, log=dimension.log)
    return point


def put_back(study: optuna.Study, trial: optuna.Trial | FrozenTrial) -> None:
    """Fail ``trial`` and enqueue its retry: what the heartbeat does for a dead worker, done by one that stops."""
    storage = study._storage
    try:
        if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
            return
    except UpdateFinishedTrialError:
        return  # already failed (and retried) by the heartbeat
    retry_callback()(study, storage.get_trial(trial._trial_id))


def fail_dead_trials(study: optuna.Study) -> None:
    """Fail and retry the running trials whose worker is gone: on the RDB storage, those whose heartbeat went
    stale (any host); on a journal, which has no heartbeat, those of this host whose process no longer exists."""
    if heartbeat_interval(study):
        optuna.storages.fail_stale_trials(study)
        return
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = trial.user_attrs.get(PID_ATTR)
        if trial.user_attrs.get(HOST_ATTR) == host and pid is not None and not process_alive(pid):
            put_back(study, trial)


def heartbeat_interval(study: optuna.Study) -> int | None:
    """The storage's heartbeat interval in seconds, or None where it has none (a journal file)."""
    storage = study._storage
    return storage.get_heartbeat_interval() if isinstance(storage, BaseHeartbeat) else None


def replaced_trials(study: optuna.Study, trial: optuna.Trial) -> list[FrozenTrial]:
    """The failed trials that ``trial`` retries (none for a first try)."""
    numbers = set(latest(study, trial).system_attrs.get("retry_history", ()))
    return [earlier for earlier in study.get_trials(deepcopy=False) if earlier.number in numbers]


def latest(study: optuna.Study, trial: optuna.Trial) -> FrozenTrial:
    """``trial`` as the storage holds it now (another process may have reported, pruned or failed it)."""
    return study._storage.get_trial(trial._trial_id)


def running(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))


@contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Record the trial's heartbeat in a thread while the block runs (RDB storage; nothing for a journal)."""
    storage = study._storage
    interval = heartbeat_interval(study)
    if not interval or not isinstance(storage, BaseHeartbeat):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            storage.record_heartbeat(trial._trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
