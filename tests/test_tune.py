"""``python -m pipeline tune`` end to end in a clone, on the real MNIST files: every trial a DVC experiment in the
clone and an MLflow run in its store, pruning, Ctrl-C and resume, ``show`` and ``apply``."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import yaml
from clones import Clone, clone_environment, clone_repository
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from pipeline.core.params import load_params
from pipeline.tuning import study as studies
from pipeline.tuning.space import load_settings, parse_overrides

pytestmark = pytest.mark.clones

EXPERIMENT = "vae-mnist"


@dataclass(frozen=True)
class TuneClone(Clone):
    """A clone in which ``python -m pipeline tune`` runs studies, with their journal and MLflow runs."""

    def tune(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.pipeline("tune", *args, check=check)

    def study(self, name: str) -> optuna.Study:
        return studies.load(str(self.root / ".tune" / "journal.log"), name)

    def runs(self, study: str) -> list[Run]:
        client = MlflowClient(f"sqlite:///{self.root / 'mlflow.db'}")
        experiment = client.get_experiment_by_name(EXPERIMENT)
        return client.search_runs([experiment.experiment_id], f"tags.`tune.study` = '{study}'")

    def experiment_names(self) -> set[str]:
        return set(self.dvc("exp", "list", "--name-only").stdout.split())


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> TuneClone:
    """The repository with its uncommitted changes, data downloaded and prepared once."""
    project = TuneClone(clone_repository(tmp_path_factory.mktemp("tune") / "clone"), clone_environment(mnist_dir))
    project.dvc("repro", "prepare")
    return project


def test_a_study_of_four_trials_with_two_workers_lands_experiments_runs_and_the_best_params(clone: TuneClone,
                                                                                          tmp_path: Path) -> None:
    done = clone.tune("run", "--study", "four", "--trials", "4", "--workers", "2", "--set", "train.epochs=1")
    lines = done.stdout.splitlines()
    assert sum(" complete val_neg_elbo " in line for line in lines) == 4, done.stdout
    assert lines[-1].startswith("tune: study four: 4 complete; best four-t"), done.stdout

    study = clone.study("four")
    trials = study.get_trials()
    assert sorted(trial.number for trial in trials) == [0, 1, 2, 3]
    assert {trial.state for trial in trials} == {TrialState.COMPLETE}
    assert {trial.user_attrs["workspace"] for trial in trials} == {"w0", "w1"}, "one worker ran every trial"
    names = {f"four-t{number}" for number in range(4)}
    assert names <= clone.experiment_names()

    runs = {run.data.tags["tune.trial"]: run for run in clone.runs("four") if "tune.trial" in run.data.tags}
    parent = study.user_attrs["mlflow_parent_run_id"]
    assert sorted(runs) == ["0", "1", "2", "3"]
    for trial in trials:
        run = runs[str(trial.number)]
        assert run.info.status == "FINISHED" and run.info.run_id == trial.user_attrs["mlflow_run_id"]
        assert run.data.tags["dvc.experiment"] == f"four-t{trial.number}" and run.data.tags["pipeline.host"]
        assert run.data.tags["mlflow.parentRunId"] == parent and run.data.tags["validation_split"] == "val"
        for key, value in trial.params.items():  # what the trial drew is what its run trained with
            logged = run.data.params[key]
            assert (float(logged) == pytest.approx(value)) if isinstance(value, float) else logged == str(value), key
        assert run.data.params["data.val_fraction"] == "0.1" and run.data.params["train.epochs"] == "1"
        assert run.data.metrics["val_neg_elbo"] == pytest.approx(trial.value, abs=1e-5)
    best = min(trials, key=lambda trial: trial.value)
    parent_run = MlflowClient(f"sqlite:///{clone.root / 'mlflow.db'}").get_run(parent)
    assert parent_run.info.status == "FINISHED" and parent_run.data.metrics["best_val_neg_elbo"] == best.value

    table = tmp_path / "trials.csv"
    clone.tune("show", "--study", "four", "--csv", str(table), "--plots", str(tmp_path / "plots"))
    rows = list(csv.DictReader(table.open(encoding="utf-8")))
    assert [row["trial"] for row in rows][0] == str(best.number) and len(rows) == 4
    assert [float(row["val_neg_elbo"]) for row in rows] == sorted(float(row["val_neg_elbo"]) for row in rows)
    assert {row["experiment"] for row in rows} == names and all(row["mlflow_run"] for row in rows)
    assert (tmp_path / "plots" / "optimization_history.png").stat().st_size > 10_000
    assert (tmp_path / "plots" / "param_importances.png").stat().st_size > 10_000

    applied = clone.tune("apply", "--study", "four").stdout
    assert f"applied four-t{best.number}" in applied
    params = yaml.safe_load((clone.root / "params.yaml").read_text(encoding="utf-8"))
    for key, value in best.params.items():
        section, name = key.split(".")
        assert params[section][name] == (pytest.approx(value) if isinstance(value, float) else value), key
    assert params["data"]["val_fraction"] == 0.1 and params["train"]["epochs"] == 1
    clone.git("checkout", "--", "params.yaml", "dvc.lock", "reports")


def test_a_trial_behind_the_median_is_pruned_everywhere(clone: TuneClone) -> None:
    tune_file = clone.root / "prune.yaml"
    settings = yaml.safe_load((clone.root / "tune.yaml").read_text(encoding="utf-8"))
    settings["pruner"] = {"kind": "median", "startup_trials": 1, "warmup_epochs": 0}
    tune_file.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")  # the space's order counts
    overrides = parse_overrides(["train.epochs=2"])
    loaded = load_settings(tune_file, load_params(clone.root / "params.yaml"), overrides)
    study = studies.create_or_load(str(clone.root / ".tune" / "journal.log"), "pruned",
                                   loaded.model_copy(update={"trials": 1}))
    study.add_trial(optuna.create_trial(value=1.0, intermediate_values={1: 1.0, 2: 1.0}))  # unbeatable

    done = clone.tune("run", "--study", "pruned", "--trials", "2", "--workers", "1", "--tune-file", str(tune_file),
                      "--set", "train.epochs=2")
    assert "tune: pruned-t0 pruned after epoch 1" in done.stdout, done.stdout + done.stderr
    [trial] = [trial for trial in clone.study("pruned").get_trials() if trial.number == 0]
    assert trial.state == TrialState.PRUNED and list(trial.intermediate_values) == [1]
    [run] = [run for run in clone.runs("pruned") if run.data.tags.get("tune.trial") == "0"]
    assert run.info.status == "KILLED" and run.data.tags["tune.state"] == "PRUNED"
    assert "pruned-t0" in clone.experiment_names()
    shown = clone.tune("show", "--study", "pruned").stdout
    assert any(line.split()[:2] == ["0", "PRUNED"] for line in shown.splitlines()), shown


def test_ctrl_c_stops_every_worker_leaves_no_running_run_and_a_rerun_resumes(clone: TuneClone) -> None:
    command = [sys.executable, "-m", "pipeline", "tune", "run", "--study", "stop", "--trials", "2", "--workers", "2",
               "--set", "train.epochs=4", "--set", "train.seed=5"]
    parent = subprocess.Popen(command, cwd=clone.root, env=clone.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, start_new_session=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # until both trainings have opened their MLflow runs
        time.sleep(3)
        journal = clone.root / ".tune" / "journal.log"
        if journal.exists() and sum(bool(trial.user_attrs.get("mlflow_run_id"))
                                    for trial in clone.study("stop").get_trials()) == 2:
            break
    os.kill(parent.pid, signal.SIGINT)
    stdout, stderr = parent.communicate(timeout=300)
    assert parent.returncode == 130, stdout + stderr
    assert "resume with: python -m pipeline tune run --study stop" in stderr

    runs = clone.runs("stop")
    assert {run.info.status for run in runs if "tune.trial" in run.data.tags} == {"KILLED"}
    assert not [run for run in runs if run.info.status == "RUNNING"]
    states = sorted(trial.state.name for trial in clone.study("stop").get_trials())
    assert states == ["FAIL", "FAIL", "WAITING", "WAITING"], "the stopped trials were not put back"
    leftovers = subprocess.run(["pgrep", "-f", f"{clone.root}/.tune"], capture_output=True, text=True,
                               timeout=60).stdout
    assert not leftovers.strip(), "a worker outlived Ctrl-C"

    resumed = clone.tune("run", "--study", "stop")
    assert resumed.stdout.startswith("tune: study stop: 2 trials to run"), resumed.stdout
    study = clone.study("stop")
    assert sorted(trial.state.name for trial in study.get_trials()) == ["COMPLETE", "COMPLETE", "FAIL", "FAIL"]
    assert studies.counted(study.get_trials()) == 2
    retried = {trial.system_attrs["failed_trial"] for trial in study.get_trials() if trial.state.name == "COMPLETE"}
    assert retried == {0, 1}
    assert json.loads(json.dumps(study.user_attrs["settings"]))["fixed"]["train.seed"] == 5
