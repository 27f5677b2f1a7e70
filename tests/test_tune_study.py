"""A study's budget, claims, retries and pruning on real Optuna storages (a journal file, SQLite), no training."""

import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from pipeline.tracking.studies import (
    PRUNED_ATTR,
    STORAGE_ENV,
    STUDY_ENV,
    TRIAL_ENV,
    NoSuchStudy,
    StudyStorageError,
    StudyTrial,
    TrialAbandoned,
    TrialPruned,
    open_storage,
)
from pipeline.tuning import study as studies
from pipeline.tuning.space import TuneSettingsError, settings_from

SETTINGS = settings_from({"trials": 6, "fixed": {"data.val_fraction": 0.1},
                          "space": {"train.beta": {"low": 0.1, "high": 2.0},
                                    "train.optimizer": {"choices": ["adam", "sgd"]}},
                          "pruner": {"kind": "median", "startup_trials": 1, "warmup_epochs": 0}})


def journal(tmp_path: Path) -> str:
    return str(tmp_path / "journal.log")


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _claim_all(url: str, name: str, results: "multiprocessing.Queue[list[int]]") -> None:
    """One worker process: claim and complete trials until none is waiting."""
    study = studies.load(url, name)
    numbers = []
    while (trial := studies.claim(study)) is not None:
        studies.suggest(trial, SETTINGS)
        numbers.append(trial.number)
        study.tell(trial, float(trial.number))
    results.put(numbers)


def test_workers_racing_for_the_queue_run_each_trial_once_and_exactly_the_budget(tmp_path: Path) -> None:
    url = journal(tmp_path)
    studies.create_or_load(url, "race", SETTINGS.model_copy(update={"trials": 12}))
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    workers = [context.Process(target=_claim_all, args=(url, "race", results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    claimed = [number for _ in workers for number in results.get(timeout=120)]
    for worker in workers:
        worker.join(timeout=60)
    assert sorted(claimed) == list(range(12)), "a trial was claimed twice or skipped"
    trials = studies.load(url, "race").get_trials()
    assert len(trials) == 12 and {trial.state for trial in trials} == {TrialState.COMPLETE}


def test_top_up_adds_only_what_the_budget_lacks(tmp_path: Path) -> None:
    study = studies.create_or_load(journal(tmp_path), "budget", SETTINGS.model_copy(update={"trials": 3}))
    assert len(studies.running(study)) == 3
    assert studies.top_up(study, 3) == 0 and studies.top_up(study, 2) == 0
    assert studies.top_up(study, 5) == 2 and len(study.get_trials()) == 5
    assert study.user_attrs[studies.BUDGET_ATTR] == 5


def test_a_dead_workers_trial_on_a_journal_is_failed_and_retried_in_its_place(tmp_path: Path) -> None:
    study = studies.create_or_load(journal(tmp_path), "dead", SETTINGS.model_copy(update={"trials": 2}))
    trial = studies.claim(study)
    point = studies.suggest(trial, SETTINGS)
    studies.fail_dead_trials(study)
    assert studies.latest(study, trial).state == TrialState.RUNNING, "a live worker's trial was failed"
    trial.set_user_attr(studies.PID_ATTR, dead_pid())
    studies.fail_dead_trials(study)

    assert studies.latest(study, trial).state == TrialState.FAIL
    assert studies.counted(study.get_trials()) == 2, "the failed try and its retry were both counted"
    retry = next(frozen for frozen in study.get_trials() if frozen.system_attrs.get("failed_trial") == trial.number)
    assert retry.state == TrialState.WAITING and retry.params == point
    claimed = [studies.claim(study), studies.claim(study)]
    assert trial.number not in [other.number for other in claimed]
    assert [studies.suggest(other, SETTINGS) for other in claimed if other.number == retry.number] == [point]
    assert studies.claim(study) is None


def test_a_stale_heartbeat_on_the_rdb_storage_fails_and_retries_the_trial(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    storage = open_storage(url, heartbeat_s=1, retry=studies.retry_callback())
    study = optuna.create_study(study_name="stale", storage=storage)
    study.set_user_attr(studies.SETTINGS_ATTR, SETTINGS.as_attrs())
    studies.top_up(study, 1)
    trial = studies.claim(study)
    with studies.heartbeat(study, trial):
        time.sleep(2.5)
        studies.fail_dead_trials(study)
        assert studies.latest(study, trial).state == TrialState.RUNNING, "a beating trial was failed"
    time.sleep(3.5)  # past the grace period of 3 missed heartbeats
    studies.fail_dead_trials(study)
    assert studies.latest(study, trial).state == TrialState.FAIL
    assert [frozen.state for frozen in study.get_trials()] == [TrialState.FAIL, TrialState.WAITING]


def test_a_worker_that_stops_puts_its_trial_back(tmp_path: Path) -> None:
    study = studies.create_or_load(journal(tmp_path), "stop", SETTINGS.model_copy(update={"trials": 1}))
    trial = studies.claim(study)
    studies.suggest(trial, SETTINGS)
    studies.put_back(study, trial)
    studies.put_back(study, trial)  # twice (the heartbeat got there first) is harmless
    assert [frozen.state for frozen in study.get_trials()] == [TrialState.FAIL, TrialState.WAITING]


def test_a_resumed_study_keeps_its_settings_and_refuses_other_ones(tmp_path: Path) -> None:
    url = journal(tmp_path)
    studies.create_or_load(url, "resume", SETTINGS)
    resumed = studies.create_or_load(url, "resume", SETTINGS.model_copy(update={"trials": 10}))
    assert len(resumed.get_trials()) == SETTINGS.trials, "a resume enqueued a second budget"
    other = SETTINGS.model_copy(update={"fixed": {"data.val_fraction": 0.2}})
    with pytest.raises(TuneSettingsError, match="exists with other settings .*fixed"):
        studies.create_or_load(url, "resume", other)
    with pytest.raises(NoSuchStudy, match="no study 'missing' .* studies there: resume"):
        studies.load(url, "missing")


def test_an_unreachable_storage_is_one_line_without_the_password() -> None:
    with pytest.raises(StudyStorageError) as raised:
        open_storage("postgresql+psycopg2://tune:secret-pw@127.0.0.1:1/optuna")
    message = str(raised.value)
    assert "unreachable" in message and "secret-pw" not in message and "\n" not in message


@pytest.fixture
def reporting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[optuna.Study, optuna.Trial, StudyTrial]:
    """A study whose one complete trial reached val_neg_elbo 100 at each of 3 epochs, and a running trial seen
    from its training through the environment a worker sets."""
    url = journal(tmp_path)
    study = studies.create_or_load(url, "prune", SETTINGS)
    study.add_trial(optuna.create_trial(value=100.0, intermediate_values={1: 100.0, 2: 100.0, 3: 100.0}))
    trial = studies.claim(study)
    monkeypatch.setenv(STORAGE_ENV, url)
    monkeypatch.setenv(STUDY_ENV, "prune")
    monkeypatch.setenv(TRIAL_ENV, str(trial.number))
    return study, trial, StudyTrial.from_environment()


def test_an_epoch_behind_the_median_prunes_the_trial(reporting: tuple) -> None:
    study, trial, seen = reporting
    with pytest.raises(TrialPruned, match="pruned after epoch 1: val_neg_elbo 150.00"):
        seen.report(1, 150.0, last=False)
    frozen = studies.latest(study, trial)
    assert frozen.intermediate_values == {1: 150.0} and frozen.user_attrs[PRUNED_ATTR] == 1


def test_an_epoch_ahead_of_the_median_goes_on(reporting: tuple) -> None:
    study, trial, seen = reporting
    seen.report(1, 99.0, last=False)
    seen.report(2, 99.5, last=False)
    assert studies.latest(study, trial).user_attrs[PRUNED_ATTR] is None


def test_the_last_epoch_is_never_pruned(reporting: tuple) -> None:
    _, _, seen = reporting
    seen.report(3, 500.0, last=True)


def test_a_training_whose_trial_was_failed_and_retried_stops(reporting: tuple) -> None:
    study, trial, seen = reporting
    studies.put_back(study, trial)
    with pytest.raises(TrialAbandoned, match="no longer running"):
        seen.report(1, 90.0, last=False)


def test_outside_a_study_the_training_sees_no_trial(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (STUDY_ENV, TRIAL_ENV, STORAGE_ENV):
        monkeypatch.delenv(name, raising=False)
    assert StudyTrial.from_environment() is None
    assert StudyTrial.from_environment({STUDY_ENV: ""}) is None
    with pytest.raises(StudyStorageError, match=f"{TRIAL_ENV} .* or {STORAGE_ENV} is not"):
        StudyTrial.from_environment({STUDY_ENV: "s", TRIAL_ENV: "x"})


def test_tags_name_the_study_the_trial_and_the_parent_run(reporting: tuple) -> None:
    study, trial, seen = reporting
    study.set_user_attr("mlflow_parent_run_id", "abc123")
    fresh = StudyTrial(seen.study_name, seen.number, seen.storage_url)
    assert fresh.tags() == {"tune.study": "prune", "tune.trial": str(trial.number), "mlflow.parentRunId": "abc123"}
    assert os.environ[STUDY_ENV] == "prune"


def test_a_worker_joining_a_study_its_creator_is_still_setting_up_waits_for_the_budget(tmp_path: Path) -> None:
    import threading

    url = journal(tmp_path)
    creating = optuna.create_study(study_name="young", storage=studies.storage_for(url))  # no settings, no budget yet

    def finish_creating() -> None:
        time.sleep(1.5)
        creating.set_user_attr(studies.SETTINGS_ATTR, SETTINGS.as_attrs())
        studies.top_up(creating, 2)

    creator = threading.Thread(target=finish_creating)
    creator.start()
    joined = studies.create_or_load(url, "young", SETTINGS)
    creator.join()
    assert len(studies.running(joined)) == 2, "the joining worker saw an empty queue and would have stopped"



RECIPE_SETTINGS = settings_from({
    "trials": 3, "fixed": {"data.val_fraction": 0.1, "train.epochs": 50, "train.beta": 1.0},
    "space": {"train.optimizer": {"choices": ["adam", "rmsprop"]},
              "train.learning_rate": {"low": 1e-3, "high": 3e-2, "log": True},
              "train.adam_beta_2": {"choices": [0.99, 0.999], "when": {"train.optimizer": "adam"}},
              "train.batch_size": {"choices": [32, 100]}}})


def recipe_study(url: str, name: str, points: list[tuple[dict, float | None]]) -> optuna.Study:
    """A study of ``RECIPE_SETTINGS`` whose trials drew ``points`` and ended with the values (None: pruned)."""
    study = optuna.create_study(study_name=name, storage=open_storage(url))
    study.set_user_attr(studies.SETTINGS_ATTR, RECIPE_SETTINGS.as_attrs())
    for point, value in points:
        study.enqueue_trial(point)
        trial = study.ask()
        assert studies.suggest(trial, RECIPE_SETTINGS) == point
        trial.set_user_attr("dvc_experiment", f"{name}-t{trial.number}")
        study.tell(trial, value, state=TrialState.COMPLETE if value is not None else TrialState.PRUNED)
    return study


def test_tune_recipe_writes_the_best_trials_changed_train_params_as_a_recipe_that_round_trips(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from helpers import REPO_ROOT

    from pipeline import recipe, tune

    url = journal(tmp_path)
    best = {"train.optimizer": "adam", "train.learning_rate": 0.0091234567, "train.adam_beta_2": 0.99,
            "train.batch_size": 100}
    recipe_study(url, "long", [({"train.optimizer": "rmsprop", "train.learning_rate": 0.002,
                                 "train.batch_size": 32}, 160.0), (best, 150.5),
                               ({"train.optimizer": "rmsprop", "train.learning_rate": 0.02, "train.batch_size": 32},
                                None)])
    shutil.copyfile(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(REPO_ROOT / "recipes", tmp_path / "recipes", ignore=shutil.ignore_patterns("tuned*"))
    command = ["recipe", "tuned-long", "--study", "long", "--storage", url, "--params", str(tmp_path / "params.yaml"),
               "--recipes", str(tmp_path / "recipes"), "--note", "Confirmed with seeds 1, 2, 3."]
    assert tune.main(command) == 0
    assert "tune: wrote" in capsys.readouterr().out

    written = recipe.read_recipe(tmp_path / "recipes" / "tuned-long.yaml")
    assert written.values == {"train.epochs": 50, "train.optimizer": "adam", "train.learning_rate": 0.00912,
                              "train.adam_beta_2": 0.99, "train.beta": 1.0}, "only what differs from the notebook"
    assert written.origin.startswith("tuned-long: best of tune study long (3 trials: 2 complete, 1 pruned), long-t1,")
    assert "# Confirmed with seeds 1, 2, 3.\n" in written.path.read_text(encoding="utf-8")
    original = (tmp_path / "params.yaml").read_bytes()
    for name in ("tuned-long", "notebook"):
        assert recipe.main(["apply", name, "--params", str(tmp_path / "params.yaml"),
                            "--recipes", str(tmp_path / "recipes")]) == 0
    assert (tmp_path / "params.yaml").read_bytes() == original

    assert tune.main(command) == 1, "a recipe file is replaced on purpose only"
    assert "exists; pass --force to replace it" in capsys.readouterr().err
    assert tune.main([*command, "--force"]) == 0
    recipe_study(url, "none-complete", [(best, None)])
    assert tune.main(["recipe", "x", "--study", "none-complete", "--storage", url, "--params",
                      str(tmp_path / "params.yaml"), "--recipes", str(tmp_path / "recipes")]) == 1
    assert "study 'none-complete' has no complete trial yet" in capsys.readouterr().err
    assert not (tmp_path / "recipes" / "x.yaml").exists()
