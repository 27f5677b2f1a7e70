"""Every MLflow call of the pipeline: where the store is, opening and closing runs, what is logged.

The default store is a SQLite file at the project root with artifacts beside it, so ``mlflow ui``
run there shows every run. ``MLFLOW_TRACKING_URI`` points the pipeline at a server instead.
DVC runs queued and ``--temp`` experiments in copies under ``.dvc/tmp/exps/``; the store is
anchored at the real project root so those runs land in the same place.
"""

import functools
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import mlflow
from filelock import FileLock
from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

from pipeline import atomic
from pipeline.errors import PipelineError
from pipeline.paths import MLFLOW_ARTIFACTS_DIR, MLFLOW_DB_FILE

if TYPE_CHECKING:
    import keras
    import numpy as np
    import pandas as pd

TEMPORARY_EXPERIMENT_DIR = os.path.join(".dvc", "tmp", "exps")
P = ParamSpec("P")
R = TypeVar("R")

PIPELINE_TAG = "pipeline.stage"
HOST_TAG = "pipeline.host"
PID_TAG = "pipeline.pid"
SERVER_PROBE_TIMEOUT_S = 5.0
STORE_LOCK_TIMEOUT_S = 120.0


class TrackingError(PipelineError):
    """The tracking store cannot be reached or does not hold the expected run."""


@dataclass(frozen=True)
class RunRef:
    """What later stages need to add to the training run: written to ``models/run.json``."""

    run_id: str
    experiment_id: str
    tracking_uri: str


def _store_errors(function: Callable[P, R]) -> Callable[P, R]:
    """Report an MLflow store failure (locked database, server error) as one ``TrackingError`` line."""
    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with _interruptions_deferred():
                return function(*args, **kwargs)
        except mlflow.exceptions.MlflowException as error:
            raise TrackingError(f"MLflow tracking store {mlflow.get_tracking_uri()}: {error.message}") from None
    return wrapper


@contextmanager
def _interruptions_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until a write to a local SQLite store is done (milliseconds).

    Raised inside SQLAlchemy, the interrupt leaves its session half-updated and prints internal
    errors; delivered afterwards, it stops the stage cleanly. Calls to a server are not held,
    so a hanging server can still be interrupted.
    """
    local = mlflow.get_tracking_uri().startswith("sqlite:")
    if not local or threading.current_thread() is not threading.main_thread():
        yield
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _require_store(uri: str) -> None:
    """Readers must not create an empty SQLite store where none was written."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise TrackingError(f"no MLflow tracking store at {uri}; run the train stage first")


def project_root() -> Path:
    """The real project root: ``DVC_ROOT`` (or the working directory), outside any DVC temp copy."""
    root = Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()
    text = str(root)
    marker = f"{os.sep}{TEMPORARY_EXPERIMENT_DIR}{os.sep}"
    return Path(text.split(marker, 1)[0]) if marker in text else root


def default_tracking_uri(root: Path) -> str:
    """The embedded store: ``sqlite:////abs/path/mlflow.db``."""
    return f"sqlite:///{root / MLFLOW_DB_FILE}"


def configure(root: Path | None = None) -> str:
    """Point MLflow at ``MLFLOW_TRACKING_URI`` or the embedded store; fail fast if a server is down."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(root or project_root())
    if uri.startswith(("http://", "https://")):
        _probe_server(uri)
    mlflow.set_tracking_uri(uri)
    return uri


def _probe_server(uri: str) -> None:
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=SERVER_PROBE_TIMEOUT_S):
            pass
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise TrackingError(f"MLflow tracking server {uri} is unreachable ({reason}); "
                            "start it or unset MLFLOW_TRACKING_URI") from None


def _first_use_lock(uri: str) -> AbstractContextManager[object]:
    """Serialise first use of a SQLite store: MLflow's table creation and experiment creation race
    when ``dvc queue start -j 2`` starts two trainings on a fresh store."""
    if not uri.startswith("sqlite:///"):
        return nullcontext()
    return FileLock(uri.removeprefix("sqlite:///") + ".lock", timeout=STORE_LOCK_TIMEOUT_S)


@_store_errors
def ensure_experiment(name: str, root: Path | None = None) -> str:
    """The id of experiment ``name``, created on first use with artifacts under the project root."""
    with _first_use_lock(mlflow.get_tracking_uri()):
        return _get_or_create_experiment(name, root)


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


def git_tags(root: Path) -> dict[str, str]:
    """The commit and whether the work tree differs from it, as MLflow tags."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no")) if commit else False
    return {"mlflow.source.git.commit": commit or "unknown", "git.dirty": str(dirty).lower()}


def run_name_and_tags() -> tuple[str | None, dict[str, str]]:
    """The DVC experiment name (when run by ``dvc exp``) as run name and tag."""
    experiment = os.environ.get("DVC_EXP_NAME")
    return experiment, ({"dvc.experiment": experiment} if experiment else {})


@contextmanager
def training_run(experiment: str, params: Mapping[str, object], tags: Mapping[str, str]) -> Iterator[RunRef]:
    """Open the run of one training; close it FINISHED, FAILED on an error, KILLED on Ctrl-C or SIGTERM.

    Runs of earlier trainings on this host whose process is gone (killed with -9) are marked FAILED first.
    """
    uri = configure()
    experiment_id = ensure_experiment(experiment)
    fail_abandoned_runs(experiment_id)
    run_name, dvc_tags = run_name_and_tags()
    owner = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    all_tags = {**git_tags(Path.cwd()), **dvc_tags, **tags, **owner, PIPELINE_TAG: "train"}
    run = _store_errors(mlflow.start_run)(experiment_id=experiment_id, run_name=run_name, tags=all_tags)
    try:
        _store_errors(mlflow.log_params)({key: _param_value(value) for key, value in params.items()})
        yield RunRef(run.info.run_id, experiment_id, uri)
    except KeyboardInterrupt:
        _close_interrupted_run(run.info.run_id, "KILLED")
        raise
    except BaseException:
        _close_interrupted_run(run.info.run_id, "FAILED")
        raise
    _store_errors(mlflow.end_run)("FINISHED")


def _close_interrupted_run(run_id: str, status: str) -> None:
    """End the active run with ``status`` while another error is on its way out.

    A Ctrl-C can land inside an MLflow write and leave that store connection unusable; then a
    fresh client sets the status. Should that fail too, the run stays RUNNING until the next
    training marks it FAILED, and the original error, not this one, reaches the user.
    """
    try:
        mlflow.end_run(status)  # leaves the active run whether or not the store call succeeds
    except Exception:  # noqa: BLE001  (any store failure: the error being raised matters more)
        try:
            MlflowClient().set_terminated(run_id, status)
        except Exception:  # noqa: BLE001
            pass


@_store_errors
def fail_abandoned_runs(experiment_id: str) -> list[str]:
    """Mark FAILED the RUNNING training runs started on this host by a process that no longer exists."""
    client = MlflowClient()
    running = client.search_runs(
        [experiment_id], filter_string=f"attributes.status = 'RUNNING' and tags.`{PIPELINE_TAG}` = 'train'"
    )
    abandoned = [
        run.info.run_id for run in running
        if run.data.tags.get(HOST_TAG) == socket.gethostname() and not _process_alive(run.data.tags.get(PID_TAG))
    ]
    for run_id in abandoned:
        client.set_tag(run_id, "pipeline.failure", "its process ended without closing the run (killed?)")
        client.set_terminated(run_id, "FAILED")
    return abandoned


def _process_alive(pid: str | None) -> bool:
    if not pid or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@_store_errors
def set_tag(key: str, value: str) -> None:
    """Tag the active run."""
    mlflow.set_tag(key, value)


def _param_value(value: object) -> str:
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)


@_store_errors
def log_epoch(epoch: int, logs: Mapping[str, float]) -> None:
    """Per-epoch metrics, with the epoch (from 1) as the step."""
    mlflow.log_metrics(dict(logs), step=epoch + 1)


@_store_errors
def search_runs(experiment: str) -> "pd.DataFrame":
    """Every run of ``experiment`` in the configured store as MLflow's DataFrame, newest first."""
    uri = configure()
    _require_store(uri)
    if MlflowClient().get_experiment_by_name(experiment) is None:
        raise TrackingError(f"no MLflow experiment {experiment!r} at {uri}")
    runs = mlflow.search_runs(experiment_names=[experiment], output_format="pandas")
    if runs.empty:
        raise TrackingError(f"no runs in MLflow experiment {experiment!r} at {uri}")
    return runs


def write_run_ref(path: Path, ref: RunRef) -> None:
    """Record the run so evaluate and report add to it."""
    atomic.write_json(path, asdict(ref))


def read_run_ref(path: Path) -> RunRef:
    """The run recorded by the train stage."""
    try:
        return RunRef(**json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as error:
        raise TrackingError(f"cannot read the training run from {path}: {error}") from None


@_store_errors
def open_training_run(path: Path) -> RunRef:
    """The training run recorded in ``path``, checked to exist in the configured store."""
    ref = read_run_ref(path)
    _require_store(configure())
    try:
        run = MlflowClient().get_run(ref.run_id)
    except mlflow.exceptions.MlflowException:
        run = None
    if run is None or run.info.lifecycle_stage == "deleted":
        state = "deleted from" if run else "not in"
        raise TrackingError(
            f"run {ref.run_id} from {path} is {state} the tracking store {mlflow.get_tracking_uri()}; "
            "rerun training (dvc repro --force train) to record a new one"
        )
    return ref


@_store_errors
def log_results(ref: RunRef, metrics: Mapping[str, float], artifacts: Sequence[Path] = (),
                settings: Mapping[str, object] | None = None) -> None:
    """Add final metrics and files to a finished run without changing its status.

    ``settings`` are the params of the stage that computed them, recorded as tags: unlike MLflow
    params, tags may change when the stage reruns on the same training run with other params.
    """
    client = MlflowClient()
    timestamp = int(time.time() * 1000)
    client.log_batch(
        ref.run_id,
        metrics=[Metric(key, float(value), timestamp, 0) for key, value in metrics.items()],
        tags=[RunTag(key, _param_value(value)) for key, value in (settings or {}).items()],
    )
    for artifact in artifacts:
        client.log_artifact(ref.run_id, str(artifact))


@_store_errors
def log_dataset(features: "np.ndarray", name: str, source: Path, context: str) -> str:
    """Record the data a run used as an MLflow dataset input and tag its digest; return the digest."""
    dataset = mlflow.data.from_numpy(features, source=str(Path(source).resolve()), name=name)
    mlflow.log_input(dataset, context=context)
    mlflow.set_tag(f"dataset.{context}.digest", dataset.digest)
    return dataset.digest


@_store_errors
def log_keras_model(model: "keras.Model", input_example: "np.ndarray") -> None:
    """Log the model as an MLflow Keras-flavor model with a signature and an input example.

    ``mlflow.keras.log_model`` (3.17, 3.18) writes the input example before creating its folder
    and fails, so the model is saved into a folder made first and logged as the run's ``model``
    artifact; ``mlflow.keras.load_model("runs:/<id>/model")`` loads it once ``pipeline`` is importable.
    """
    import tempfile

    import keras
    import mlflow.keras
    from mlflow.models import infer_signature

    signature = infer_signature(input_example, model.predict(input_example, verbose=0))
    with tempfile.TemporaryDirectory() as scratch:
        saved = Path(scratch) / "model"
        saved.mkdir()
        mlflow.keras.save_model(
            model,
            str(saved),
            signature=signature,
            input_example=input_example,
            pip_requirements=[f"keras=={keras.__version__}", f"tensorflow=={_tensorflow_version()}"],
        )
        mlflow.log_artifacts(str(saved), artifact_path="model")


def _tensorflow_version() -> str:
    from importlib.metadata import version

    return version("tensorflow")
