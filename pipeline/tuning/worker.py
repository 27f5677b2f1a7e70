"""One worker: claim a waiting trial, run it as a DVC experiment in the worker's workspace, tell the study.

The trial's training is the pipeline's own train stage (``dvc exp run train``): it reports each epoch to the
trial and may be pruned. The worker reads the objective from the history the stage wrote, pushes the
experiment, and tells Optuna COMPLETE, PRUNED or FAIL. Ctrl-C (or SIGTERM) stops DVC and the stage, which
close their MLflow run KILLED, and puts the trial back in the queue, so a resumed study runs it again.
"""

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from pipeline.core.params import Params
from pipeline.tracking.studies import PRUNED_ATTR, RUN_ATTR, STORAGE_ENV, STUDY_ENV, TRIAL_ENV
from pipeline.tuning import study as studies
from pipeline.tuning.space import TuneSettings, TuneSettingsError, cli_value, trial_params
from pipeline.tuning.workspace import Workspace, tool_environment

POLL_S = 5.0
"""How often an idle worker looks for a trial to retry while others still run theirs."""
EXPERIMENT_ATTR, WORKSPACE_ATTR, COMMIT_ATTR = "dvc_experiment", "workspace", "commit"
RELATIVE_PATH_VARIABLES = ("MNIST_MIRROR",)
"""Variables whose relative paths mean the user's repository, not the workspace the stages run in."""


def experiment_name(study_name: str, number: int) -> str:
    """The DVC experiment (and MLflow run name) of trial ``number``: ``<study>-t<number>``."""
    return f"{study_name}-t{number}"


@dataclass
class Worker:
    """Runs trials of ``study`` in ``workspace`` until none is left (or ``limit`` are done)."""

    study: optuna.Study
    settings: TuneSettings
    params: Params
    workspace: Workspace
    storage_url: str
    tracking_uri: str

    def run(self, limit: int | None = None) -> int:
        """Work until the study's budget is met; return how many trials this worker ran."""
        done = 0
        while limit is None or done < limit:
            studies.fail_dead_trials(self.study)
            trial = studies.claim(self.study)
            if trial is None:
                if not studies.running(self.study):
                    break
                time.sleep(POLL_S)
                continue
            self.close_replaced_runs(trial)
            self.run_trial(trial)
            done += 1
        return done

    def close_replaced_runs(self, trial: optuna.Trial) -> None:
        """A retry closes the MLflow runs its failed tries left RUNNING (their process died with the worker)."""
        run_ids = [earlier.user_attrs.get(RUN_ATTR) for earlier in studies.replaced_trials(self.study, trial)]
        if any(run_ids):
            from pipeline.tracking.study_runs import close_stale_runs

            close_stale_runs([run_id for run_id in run_ids if run_id], f"trial {trial.number} retries it")

    def environment(self, number: int) -> dict[str, str]:
        """What ``dvc exp run`` and the train stage see: the user's tracking store and data, and the trial."""
        env = tool_environment({
            "MLFLOW_TRACKING_URI": self.tracking_uri, STORAGE_ENV: self.storage_url,
            STUDY_ENV: self.study.study_name, TRIAL_ENV: str(number)})
        for name in RELATIVE_PATH_VARIABLES:
            value = env.get(name, "")
            if value and "://" not in value and not Path(value).is_absolute():
                env[name] = str(self.workspace.root / value)
        return env

    def run_trial(self, trial: optuna.Trial) -> None:
        name = experiment_name(self.study.study_name, trial.number)
        started = time.monotonic()
        try:
            point = studies.suggest(trial, self.settings)
            trial.set_user_attr(EXPERIMENT_ATTR, name)
            trial.set_user_attr(WORKSPACE_ATTR, self.workspace.path.name)
            trial.set_user_attr(COMMIT_ATTR, self.workspace.commit())
            try:
                trial_params(self.params, self.settings, point)
            except TuneSettingsError as error:  # valid one by one, not together (batch size x hidden units)
                self._fail(trial, name, str(error), point)
                return
            assignments = {key: cli_value(value) for key, value in {**self.settings.fixed, **point}.items()}
            with studies.heartbeat(self.study, trial):
                succeeded = self.workspace.experiment(name, assignments, self.environment(trial.number))
                self._finish(trial, name, succeeded, point, time.monotonic() - started)
        except BaseException:  # Ctrl-C, or a failure of the worker itself: the trial goes back in the queue
            studies.put_back(self.study, trial)
            raise

    def _finish(self, trial: optuna.Trial, name: str, succeeded: bool, point: dict[str, Any], seconds: float) -> None:
        frozen = studies.latest(self.study, trial)
        if frozen.state != TrialState.RUNNING:  # its heartbeat went stale meanwhile: a retry runs it again
            report(name, "abandoned", point, seconds)
            return
        if succeeded:
            value = self.workspace.objective()
            if not frozen.user_attrs.get(RUN_ATTR):  # restored from DVC's run cache: the run that trained it
                trial.set_user_attr(RUN_ATTR, self.workspace.run_id())
            self.workspace.publish(name)
            self.study.tell(trial, value)
            report(name, f"complete val_neg_elbo {value:.2f}", point, seconds)
        elif frozen.user_attrs.get(PRUNED_ATTR):
            self.workspace.save_params_only(name)
            self.workspace.publish(name)
            self.study.tell(trial, state=TrialState.PRUNED)
            report(name, f"pruned after epoch {frozen.user_attrs[PRUNED_ATTR]}", point, seconds)
        else:
            self._fail(trial, name, self.workspace.last_error(), point)

    def _fail(self, trial: optuna.Trial, name: str, reason: str, point: dict[str, Any]) -> None:
        trial.set_user_attr(studies.FAILURE_ATTR, reason)
        self.study.tell(trial, state=TrialState.FAIL)
        report(name, f"failed: {reason}", point)


def report(name: str, outcome: str, point: dict[str, Any], seconds: float | None = None) -> None:
    """One line per trial: ``tune: <experiment> <outcome> (key=value, ...) in N s``."""
    settings = ", ".join(f"{key}={cli_value(value)}" for key, value in point.items())
    timing = f" in {seconds:.0f} s" if seconds is not None else ""
    print(f"tune: {name} {outcome} ({settings}){timing}", flush=True)

