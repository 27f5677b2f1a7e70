"""What the pipeline records in MLflow: the training run, its epochs, model and results.

Where the store is and how its failures surface live in ``pipeline.tracking.store``; the logged
models and the registry in ``logged_models`` and ``registry``: MLflow is called from this package only.
"""

import json
import os
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

from pipeline.core import atomic_files
from pipeline.core.paths import MLFLOW_ARTIFACTS_DIR
from pipeline.core.processes import process_alive
from pipeline.tracking.git_state import git_tags
from pipeline.tracking.store import (
    TrackingError,
    configure,
    first_use_lock,
    project_root,
    require_store,
    store_errors,
    store_exists,
)
from pipeline.tracking.studies import STATE_TAG, TrialPruned

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


RETRAIN_COMMAND = "dvc repro --force --single-item train, then dvc repro"
"""Train again even where DVC would restore the model from its run cache, then redo what follows;
``--single-item`` keeps ``--force`` from downloading and preparing again."""
PIPELINE_TAG = "pipeline.stage"
HOST_TAG = "pipeline.host"
PID_TAG = "pipeline.pid"
MODEL_KIND_TAG = "model.kind"
"""``vae`` or ``cvae`` (``pipeline.core.model_kind``): which likelihood the run's test metrics estimate."""
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
"""The experiment's kind as the MLflow UI sets it; 3.17's UI lets its GenAI/Model training switch win."""
EXPERIMENT_KIND = "custom_model_development"
"""Shown as "Machine learning": runs, their logged models and charts, not the GenAI traces view."""


@dataclass(frozen=True)
class RunRef:
    """What later stages need to add to the training run: written to ``models/run.json``."""

    run_id: str
    experiment_id: str
    tracking_uri: str
    models: dict[str, str] = field(default_factory=dict)
    """The run's logged models, ``{"encoder": model_id, ...}``; ``models:/<model_id>`` loads one."""


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
        store_errors(mlflow.log_params)({key: _param_value(value) for key, value in params.items()})
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


@store_errors
def set_tag(key: str, value: str) -> None:
    """Tag the active run."""
    mlflow.set_tag(key, value)


def _param_value(value: object) -> str:
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)


@store_errors
def log_epoch(epoch: int, logs: Mapping[str, float]) -> None:
    """Per-epoch metrics, with the epoch (from 1) as the step."""
    mlflow.log_metrics(dict(logs), step=epoch + 1)


@store_errors
def search_runs(experiment: str) -> "pd.DataFrame":
    """Every run of ``experiment`` in the configured store as MLflow's DataFrame, newest first."""
    uri = configure()
    require_store(uri)
    if MlflowClient().get_experiment_by_name(experiment) is None:
        raise TrackingError(f"no MLflow experiment {experiment!r} at {uri}")
    runs = mlflow.search_runs(experiment_names=[experiment], output_format="pandas")
    if runs.empty:
        raise TrackingError(f"no runs in MLflow experiment {experiment!r} at {uri}")
    return runs


def write_run_ref(path: Path, ref: RunRef) -> None:
    """Record the run so evaluate and report add to it."""
    atomic_files.write_json(path, asdict(ref))


def read_run_ref(path: Path) -> RunRef:
    """The run recorded by the train stage."""
    try:
        return RunRef(**json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as error:
        raise TrackingError(f"cannot read the training run from {path}: {error}") from None


@store_errors
def open_training_run(path: Path) -> RunRef:
    """The training run recorded in ``path``, checked to exist in the configured store.

    A model restored from DVC's run cache names the run that first trained it: when that run is not in
    the store (deleted, or another store), the error says how to train again and record a new one.
    """
    ref = read_run_ref(path)
    store = configure()
    try:
        run = MlflowClient().get_run(ref.run_id) if store_exists(store) else None
    except mlflow.exceptions.MlflowException:
        run = None
    if run is None or run.info.lifecycle_stage == "deleted":
        state = "deleted from" if run else "not in"
        recorded = f" (it was recorded in {ref.tracking_uri})" if ref.tracking_uri != store else ""
        raise TrackingError(
            f"run {ref.run_id} from {path} is {state} the tracking store {store}{recorded}; to train again and "
            f"record a new one: {RETRAIN_COMMAND}"
        )
    return ref


@store_errors
def log_results(ref: RunRef, metrics: Mapping[str, float], artifacts: Sequence[Path] = (),
                settings: Mapping[str, object] | None = None) -> None:
    """Add final metrics and files to a finished run without changing its status.

    The metrics are linked to each of the run's logged models too (``ref.models``), so the Models
    page and each registered version show them. ``settings`` are the params of the stage that
    computed them, recorded as tags: unlike MLflow params, tags may change when the stage reruns on
    the same training run with other params.
    """
    client = MlflowClient()
    timestamp = int(time.time() * 1000)
    model_ids = list(ref.models.values()) or [None]
    client.log_batch(
        ref.run_id,
        metrics=[Metric(key, float(value), timestamp, 0, model_id=model_id)
                 for model_id in model_ids for key, value in metrics.items()],
        tags=[RunTag(key, _param_value(value)) for key, value in (settings or {}).items()],
    )
    for artifact in artifacts:
        client.log_artifact(ref.run_id, str(artifact))


@store_errors
def log_dataset(features: "np.ndarray", name: str, source: Path, context: str) -> str:
    """Record the data a run used as an MLflow dataset input and tag its digest; return the digest.

    The source is built as MLflow's ``local`` kind: a bare path matches two registered kinds and warns.
    """
    from mlflow.data.dataset_source_registry import get_dataset_source_from_json

    local = get_dataset_source_from_json(json.dumps({"uri": str(Path(source).resolve())}), source_type="local")
    dataset = mlflow.data.from_numpy(features, source=local, name=name)
    mlflow.log_input(dataset, context=context)
    mlflow.set_tag(f"dataset.{context}.digest", dataset.digest)
    return dataset.digest
