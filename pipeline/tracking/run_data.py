"""What a run records: params as MLflow shows them, tags, per-epoch metrics, the final results with their files,
and the dataset it trained on.
"""

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

from pipeline.tracking.run_file import RunRef
from pipeline.tracking.store import store_errors

if TYPE_CHECKING:
    import numpy as np


def param_value(value: object) -> str:
    """A param or tag value as MLflow stores it: a string, lists and mappings as JSON."""
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)


@store_errors
def set_tag(key: str, value: str) -> None:
    """Tag the active run."""
    mlflow.set_tag(key, value)


@store_errors
def log_epoch(epoch: int, logs: Mapping[str, float]) -> None:
    """Per-epoch metrics, with the epoch (from 1) as the step."""
    mlflow.log_metrics(dict(logs), step=epoch + 1)


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
    model_ids: list[str | None] = [*ref.models.values()] or [None]
    client.log_batch(
        ref.run_id,
        metrics=[Metric(key, float(value), timestamp, 0, model_id=model_id)
                 for model_id in model_ids for key, value in metrics.items()],
        tags=[RunTag(key, param_value(value)) for key, value in (settings or {}).items()],
    )
    for artifact in artifacts:
        client.log_artifact(ref.run_id, str(artifact))


@store_errors
def log_dataset(features: "np.ndarray", name: str, source: Path, context: str) -> str:
    """Record the data a run used as an MLflow dataset input and tag its digest; return the digest.

    The source is built as MLflow's ``local`` kind: a bare path matches two registered kinds and warns.
    """
    from mlflow.data.dataset_source_registry import get_dataset_source_from_json
    from mlflow.data.numpy_dataset import from_numpy

    local = get_dataset_source_from_json(json.dumps({"uri": str(Path(source).resolve())}), source_type="local")
    dataset = from_numpy(features, source=local, name=name)
    mlflow.log_input(dataset, context=context)
    mlflow.set_tag(f"dataset.{context}.digest", dataset.digest)
    return dataset.digest
