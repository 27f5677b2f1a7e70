"""The runs of an experiment, for ``python -m pipeline compare``."""

from typing import TYPE_CHECKING

import mlflow
from mlflow.tracking import MlflowClient

from pipeline.tracking.store import TrackingError, configure, require_store, store_errors

if TYPE_CHECKING:
    import pandas as pd


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
