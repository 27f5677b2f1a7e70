"""The training run's life in MLflow: its experiment, its opening with params and tags, its closing status, and
the runs of killed trainings marked FAILED.

What the run records while it is open lives in ``run_data``; where the store is and how its failures surface in
``store``: MLflow is called from this package only.
"""

import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from pipeline.core.model_kind import RUN_TAG
from pipeline.core.paths import MLFLOW_ARTIFACTS_DIR, project_root
from pipeline.core.processes import process_alive
from pipeline.tracking.git_state import git_tags
from pipeline.tracking.run_data import param_value
from pipeline.tracking.run_file import RunRef
from pipeline.tracking.store import TrackingError, configure, first_use_lock, store_errors
from pipeline.tracking.studies import STATE_TAG, TrialPruned

PIPELINE_TAG = "pipeline.stage"
HOST_TAG = "pipeline.host"
PID_TAG = "pipeline.pid"
MODEL_KIND_TAG = RUN_TAG
"""``vae`` or ``cvae`` (``pipeline.core.model_kind``): which likelihood the run's test metrics estimate."""
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
"""The experiment's kind as the MLflow UI sets it; 3.17's UI lets its GenAI/Model training switch win."""
EXPERIMENT_KIND = "custom_model_development"
"""Shown as "Machine learning": runs, their logged models and charts, not the GenAI traces view."""


@store_errors
def ensure_experiment(name: str, root: Path | None = None) -> str:
    """The id of experiment ``name``, created on first use with artifacts under the project root.

    The experiment is marked as model training for the MLflow UI unless someone chose another kind.
    """
    with first_use_lock(mlflow.get_tracking_uri()):
        experiment_id = _get_or_create_experiment(name, root)
    client = MlflowClient()
    if EXPERIMENT_KIND_TAG not in client.get_experiment(experiment_id).tags:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return experiment_id


def _get_or_create_experiment(name: str, root: Path | None) -> str:
    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None and experiment.lifecycle_stage == "deleted":
        raise TrackingError(
            f"experiment {name!r} is deleted in the tracking store {mlflow.get_tracking_uri()}; restore it "
            f"(mlflow experiments restore --experiment-id {experiment.experiment_id}) or change train.experiment"
        )
    if experiment is not None:
        return experiment.experiment_id
    artifact_location = None
    if mlflow.get_tracking_uri().startswith("sqlite:"):
        artifact_location = ((root or project_root()) / MLFLOW_ARTIFACTS_DIR).as_uri()
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except mlflow.exceptions.MlflowException:
        # Another process created it between our look-up and create: use theirs.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def run_name_and_tags() -> tuple[str | None, dict[str, str]]:
    """The DVC experiment name (when run by ``dvc exp``) as run name and tag."""
    experiment = os.environ.get("DVC_EXP_NAME")
    return experiment, ({"dvc.experiment": experiment} if experiment else {})


@contextmanager
def training_run(experiment: str, params: Mapping[str, object], tags: Mapping[str, str]) -> Iterator[RunRef]:
    """Open the run of one training; close it FINISHED, FAILED on an error, KILLED on Ctrl-C or SIGTERM, and
    KILLED with the tag ``tune.state`` = ``PRUNED`` when a study's pruner stopped it.

    Runs of earlier trainings on this host whose process is gone (killed with -9) are marked FAILED first.
    """
    uri = configure()
    experiment_id = ensure_experiment(experiment)
    fail_abandoned_runs(experiment_id)
    run_name, dvc_tags = run_name_and_tags()
    owner = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    all_tags = {**git_tags(Path.cwd()), **dvc_tags, **tags, **owner, PIPELINE_TAG: "train"}
    run = store_errors(mlflow.start_run)(experiment_id=experiment_id, run_name=run_name, tags=all_tags)
    try:
        store_errors(mlflow.log_params)({key: param_value(value) for key, value in params.items()})
        yield RunRef(run.info.run_id, experiment_id, uri)
    except KeyboardInterrupt:
        _close_interrupted_run(run.info.run_id, "KILLED")
        raise
    except TrialPruned:
        store_errors(mlflow.set_tag)(STATE_TAG, "PRUNED")
        _close_interrupted_run(run.info.run_id, "KILLED")  # stopped on purpose, not broken
        raise
    except BaseException:
        _close_interrupted_run(run.info.run_id, "FAILED")
        raise
    store_errors(mlflow.end_run)("FINISHED")


def _close_interrupted_run(run_id: str, status: str) -> None:
    """End the active run with ``status`` while another error is on its way out.

    A Ctrl-C can land inside an MLflow write and leave that store connection unusable; then a
    fresh client sets the status. Should that fail too, the run stays RUNNING until the next
    training marks it FAILED, and the original error, not this one, reaches the user.
    """
    try:
        mlflow.end_run(status)  # leaves the active run whether or not the store call succeeds
    except Exception:
        with suppress(Exception):
            MlflowClient().set_terminated(run_id, status)


@store_errors
def fail_abandoned_runs(experiment_id: str) -> list[str]:
    """Mark FAILED the RUNNING training runs started on this host by a process that no longer exists."""
    client = MlflowClient()
    running = client.search_runs(
        [experiment_id], filter_string=f"attributes.status = 'RUNNING' and tags.`{PIPELINE_TAG}` = 'train'"
    )
    abandoned = [
        run.info.run_id for run in running
        if run.data.tags.get(HOST_TAG) == socket.gethostname() and not process_alive(run.data.tags.get(PID_TAG))
    ]
    for run_id in abandoned:
        client.set_tag(run_id, "pipeline.failure", "its process ended without closing the run (killed?)")
        client.set_terminated(run_id, "FAILED")
    return abandoned
