"""The MLflow side of a study: one parent run that every trial's training run nests under.

The parent run is created with the study, holds the study's settings as params and, once trials are done,
its best validation -ELBO; it is closed at once (FINISHED), so a stopped study never leaves a RUNNING run.
The trials' own runs are the train stage's, tagged by ``pipeline.tracking.studies``.
"""

import json
from collections.abc import Mapping
from typing import Any

from mlflow.entities import Param, RunTag
from mlflow.tracking import MlflowClient

from pipeline.core.params import flatten
from pipeline.tracking.run_lifecycle import PIPELINE_TAG, ensure_experiment, fail_abandoned_runs
from pipeline.tracking.store import configure, store_errors
from pipeline.tracking.studies import STUDY_TAG

BEST_METRIC = "best_val_neg_elbo"
BEST_TRIAL_TAG = "tune.best_trial"


@store_errors
def create_parent_run(experiment: str, study_name: str, settings: Mapping[str, Any]) -> str:
    """Open and close the study's parent run in ``experiment``; return its id."""
    configure()
    client = MlflowClient()
    run = client.create_run(ensure_experiment(experiment), run_name=study_name,
                            tags={STUDY_TAG: study_name, PIPELINE_TAG: "tune"})
    params = [Param(f"tune.{key}", json.dumps(value) if isinstance(value, list | dict) else str(value))
              for key, value in flatten(settings)]
    client.log_batch(run.info.run_id, params=params)
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


@store_errors
def record_best(run_id: str, value: float, trial: int, experiment_name: str) -> None:
    """The study's best trial so far on its parent run."""
    configure()
    client = MlflowClient()
    client.log_batch(run_id, tags=[RunTag(BEST_TRIAL_TAG, f"{trial} ({experiment_name})")])
    client.log_metric(run_id, BEST_METRIC, value)


@store_errors
def close_abandoned_runs(experiment: str) -> list[str]:
    """Close the training runs of this host that a stopped trial left RUNNING (its process is gone)."""
    configure()
    return fail_abandoned_runs(ensure_experiment(experiment))


@store_errors
def close_stale_runs(run_ids: list[str], reason: str) -> None:
    """Mark FAILED the runs of ``run_ids`` still RUNNING: their trial's worker died (on any host)."""
    configure()
    client = MlflowClient()
    for run_id in run_ids:
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_tag(run_id, "pipeline.failure", f"its worker stopped; {reason}")
            client.set_terminated(run_id, "FAILED")
