"""``models/run.json``: the training run that evaluate, report and the gate add to, as the train stage recorded it.

A model restored from DVC's run cache names the run that first trained it, so reading the file also checks that
the run is still in the configured store.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from pipeline.core import atomic_files
from pipeline.tracking.store import TrackingError, configure, store_errors, store_exists

RETRAIN_COMMAND = "dvc repro --force --single-item train, then dvc repro"
"""Train again even where DVC would restore the model from its run cache, then redo what follows;
``--single-item`` keeps ``--force`` from downloading and preparing again."""


@dataclass(frozen=True)
class RunRef:
    """What later stages need to add to the training run: written to ``models/run.json``."""

    run_id: str
    experiment_id: str
    tracking_uri: str
    models: dict[str, str] = field(default_factory=dict)
    """The run's logged models, ``{"encoder": model_id, ...}``; ``models:/<model_id>`` loads one."""


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
    except mlflow.exceptions.MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise  # a store that fails is reported as such by store_errors, not as a missing run
        run = None
    if run is None or run.info.lifecycle_stage == "deleted":
        state = "deleted from" if run else "not in"
        recorded = f" (it was recorded in {ref.tracking_uri})" if ref.tracking_uri != store else ""
        raise TrackingError(
            f"run {ref.run_id} from {path} is {state} the tracking store {store}{recorded}; to train again and "
            f"record a new one: {RETRAIN_COMMAND}"
        )
    return ref
