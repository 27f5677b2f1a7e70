"""One study, two hosts: two clones of the shared git remote each run ``tune worker`` against the same study in
PostgreSQL, with the S3 DVC remote and the MLflow server. One worker is SIGKILLed mid-trial (with its DVC and
train processes, as a host that dies); the other finishes the study: the budget met exactly, the killed trial
failed by the heartbeat and retried, no RUNNING run left, every complete trial's experiment on the git remote."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import servers
import sqlalchemy
import yaml
from clones import Clone
from team import Built, Pulled, Stack, record

from pipeline.tracking.studies import RUN_ATTR
from pipeline.tuning import study as studies

pytestmark = pytest.mark.stack

STUDY = "hosts"
BUDGET = 4
WORKER_TIMEOUT_S = 1500


def start_worker(clone: Clone, storage: str, tune_file: Path, log: Path) -> subprocess.Popen:
    """``tune worker`` in ``clone``, in a session of its own (its DVC and stage processes with it)."""
    command = [sys.executable, "-m", "pipeline", "tune", "worker", "--study", STUDY, "--tune-file", str(tune_file)]
    with open(log, "w", encoding="utf-8") as output:
        return subprocess.Popen(command, cwd=clone.root, env=clone.env | {"OPTUNA_STORAGE": storage}, stdout=output,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def running_trial_of(study: optuna.Study, pid: int) -> optuna.trial.FrozenTrial | None:
    """The trial worker ``pid`` runs once its training has opened its MLflow run."""
    for trial in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
        if trial.user_attrs.get(studies.PID_ATTR) == pid and trial.user_attrs.get(RUN_ATTR):
            return trial
    return None


def test_two_hosts_share_a_study_and_survive_a_killed_worker(builder: Built, second_clone: Pulled, stack: Stack,
                                                             tmp_path: Path) -> None:
    storage = servers.add_database(stack.postgres_uri, "optuna")
    tune_file = tmp_path / "tune.yaml"  # the same small study for both hosts: BUDGET trials of one epoch
    settings = yaml.safe_load((builder.clone.root / "tune.yaml").read_text(encoding="utf-8"))
    settings["trials"], settings["fixed"]["train.epochs"] = BUDGET, 1
    tune_file.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")  # the space's order counts
    first, second = builder.clone, second_clone.clone

    started = time.monotonic()
    survivor = start_worker(first, storage, tune_file, tmp_path / "first.log")
    victim = start_worker(second, storage, tune_file, tmp_path / "second.log")
    study = None
    killed = None
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    while killed is None and time.monotonic() < deadline and victim.poll() is None:
        time.sleep(0.5)
        try:
            study = study or studies.load(storage, STUDY)
        except studies.NoSuchStudy:
            continue
        killed = running_trial_of(study, victim.pid)
    assert killed is not None, f"the second worker never ran a trial:\n{(tmp_path / 'second.log').read_text()}"
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    try:
        survivor.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        os.killpg(survivor.pid, signal.SIGKILL)
        pytest.fail(f"the surviving worker did not finish:\n{(tmp_path / 'first.log').read_text()[-3000:]}")
    wall = time.monotonic() - started
    log = (tmp_path / "first.log").read_text(encoding="utf-8")
    assert survivor.returncode == 0, log

    trials = studies.load(storage, STUDY).get_trials()
    states = [trial.state.name for trial in trials]
    assert states.count("COMPLETE") == BUDGET and studies.counted(trials) == BUDGET, states
    [failed] = [trial for trial in trials if trial.state.name == "FAIL"]
    assert failed.number == killed.number
    [retry] = [trial for trial in trials if trial.system_attrs.get("failed_trial") == killed.number]
    assert retry.state.name == "COMPLETE" and retry.params == killed.params
    assert retry.user_attrs[studies.PID_ATTR] == survivor.pid

    with sqlalchemy.create_engine(stack.postgres_uri).connect() as database:
        statuses = dict(database.execute(sqlalchemy.text("SELECT status, count(*) FROM runs GROUP BY status")).all())
        studied = dict(database.execute(sqlalchemy.text(
            "SELECT r.status, count(*) FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
            "WHERE t.key = 'tune.study' AND t.value = :study GROUP BY r.status"), {"study": STUDY}).all())
        killed_run = database.execute(sqlalchemy.text("SELECT status FROM runs WHERE run_uuid = :id"),
                                      {"id": killed.user_attrs[RUN_ATTR]}).scalar_one()
    assert "RUNNING" not in statuses, statuses
    assert studied == {"FINISHED": 1 + BUDGET, "FAILED": 1}, "not one parent run, the complete trials' and the killed"
    assert killed_run == "FAILED"

    listed = first.dvc("exp", "list", "origin", "--name-only").stdout.split()
    complete = {trial.user_attrs["dvc_experiment"] for trial in trials if trial.state.name == "COMPLETE"}
    assert complete <= set(listed), f"on the git remote: {listed}"
    hosts = {trial.user_attrs[studies.PID_ATTR] for trial in trials if trial.state.name == "COMPLETE"}
    record("tune: trials by state (budget 4, one worker killed)", {state: states.count(state) for state in set(states)})
    record("tune: complete trials per worker pid", len(hosts))
    record("tune: experiments listed by dvc exp list origin", len(listed))
    record("tune: the study's runs on the server by status (parent included)", dict(sorted(studied.items())))
    record("tune: wall s, both workers started to the study done", f"{wall:.0f}")
