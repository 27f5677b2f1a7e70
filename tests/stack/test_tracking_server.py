"""``mlflow server`` on PostgreSQL with artifacts proxied to S3: the pipeline's runs land there complete.

The clones set only ``MLFLOW_TRACKING_URI``: no AWS variables, so every artifact reaches the bucket
through the server.
"""

import csv
import json
from pathlib import Path

import pytest
import servers
import sqlalchemy
import yaml
from clones import metric
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from team import MLFLOW_BUCKET, MLFLOW_PREFIX, QUEUED, Built, Queued, Stack, record

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.integration]

EXPERIMENT = "vae-mnist"
TEST_METRICS = ("test_neg_elbo", "test_nll_is", "test_reconstruction_loss", "test_kl_loss", "active_units")
FIGURES = ("manifold.png", "latent_scatter.png", "reconstructions.png", "samples.png", "learning_curves.png")
REPORT_ARTIFACTS = {*FIGURES, "index.html", "per_class.csv", "model"}


def run_objects(stack: Stack, run: Run) -> list[str]:
    """The bucket keys of ``run``'s artifacts, relative to its artifact folder."""
    prefix = f"{MLFLOW_PREFIX}/{run.info.experiment_id}/{run.info.run_id}/artifacts/"
    return [key.removeprefix(prefix) for key in servers.object_keys(stack.s3_endpoint, MLFLOW_BUCKET, prefix)]


def assert_complete(stack: Stack, run: Run) -> None:
    """FINISHED with test metrics; figures, report and model listed by the server and stored in the bucket."""
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info.artifact_uri
    missing = [name for name in TEST_METRICS if name not in run.data.metrics]
    assert not missing, f"evaluate logged no {missing}"
    client = MlflowClient(stack.tracking_uri)
    listed = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert listed >= REPORT_ARTIFACTS, f"missing artifacts {REPORT_ARTIFACTS - listed}"
    stored = set(run_objects(stack, run))
    assert {*FIGURES, "index.html", "model/MLmodel"} <= stored, f"bucket holds {sorted(stored)}"


def server_runs(stack: Stack, dvc_experiment: str) -> list[Run]:
    client = MlflowClient(stack.tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None, f"no MLflow experiment {EXPERIMENT!r} on the server"
    return client.search_runs([experiment.experiment_id], f"tags.`dvc.experiment` = '{dvc_experiment}'")


def test_repro_lands_its_run_in_postgresql_and_its_artifacts_in_s3(builder: Built, stack: Stack,
                                                                   tmp_path: Path) -> None:
    reference = json.loads((builder.clone.root / "models/run.json").read_text(encoding="utf-8"))
    assert reference["tracking_uri"] == stack.tracking_uri
    client = MlflowClient(stack.tracking_uri)
    run = client.get_run(reference["run_id"])
    assert_complete(stack, run)
    assert run.data.params["train.epochs"] == "1"
    written = json.loads((builder.clone.root / "reports/metrics.json").read_text(encoding="utf-8"))
    for name in TEST_METRICS:
        assert run.data.metrics[name] == pytest.approx(written[name], rel=1e-12), name

    with sqlalchemy.create_engine(stack.postgres_uri).connect() as database:
        status = database.execute(sqlalchemy.text("SELECT status FROM runs WHERE run_uuid = :id"),
                                  {"id": run.info.run_id}).scalar_one()
    assert status == "FINISHED"

    downloaded = client.download_artifacts(run.info.run_id, "model/MLmodel", str(tmp_path))
    model = yaml.safe_load(Path(downloaded).read_text(encoding="utf-8"))
    assert "keras" in model["flavors"], model["flavors"]
    objects = run_objects(stack, run)
    record("objects of the repro's run in the bucket", len(objects))
    assert any(key.startswith("model/data/") for key in objects), "no saved Keras model in S3"


def test_two_queued_experiments_land_two_finished_runs_on_the_server(queued: Queued, stack: Stack,
                                                                     builder: Built) -> None:
    good = [name for name in QUEUED if name != "stack-bad"]
    spans = []
    for name in good:
        state = queued.shown[name]["executor"]["state"]
        assert state == "success", f"{name} {state}:\n{_queue_log(builder, name)}"
        [run] = server_runs(stack, name)
        assert_complete(stack, run)
        assert run.info.run_name == name
        assert metric(queued.shown, name, "test_neg_elbo") == pytest.approx(run.data.metrics["test_neg_elbo"],
                                                                            rel=1e-12)
        [evaluated] = MlflowClient(stack.tracking_uri).get_metric_history(run.info.run_id, "test_neg_elbo")
        spans.append((run.info.start_time, evaluated.timestamp))
    record("runs on the server by status", _runs_by_status(stack))
    record(f"objects under {MLFLOW_PREFIX}/ in the bucket",
           len(servers.object_keys(stack.s3_endpoint, MLFLOW_BUCKET, f"{MLFLOW_PREFIX}/")))
    (start_a, end_a), (start_b, end_b) = spans
    assert start_a < end_b and start_b < end_a, "the experiments did not overlap: -j 2 ran them one by one"


def test_compare_ranks_the_server_runs_of_the_sweep(queued: Queued, stack: Stack, builder: Built,
                                                    tmp_path: Path) -> None:
    table = tmp_path / "runs.csv"
    builder.clone.pipeline("compare", "--csv", str(table))
    rows = list(csv.DictReader(table.open(encoding="utf-8")))
    assert [row["status"] for row in rows] == ["FINISHED"] * 3, rows
    ranked = [float(row["test_neg_elbo"]) for row in rows]
    assert ranked == sorted(ranked)
    for name in ("stack-beta", "stack-seed"):
        [row] = [row for row in rows if row["run"] == name]
        [run] = server_runs(stack, name)
        assert float(row["test_neg_elbo"]) == pytest.approx(run.data.metrics["test_neg_elbo"], rel=1e-9)


def test_failed_queued_experiment_shows_only_in_queue_status_and_its_log(queued: Queued, stack: Stack,
                                                                        builder: Built) -> None:
    assert queued.start.returncode == 0, "dvc queue start reported the failure itself"
    assert queued.shown["stack-bad"]["executor"]["state"] == "failed"
    [row] = [line for line in queued.status.splitlines() if "stack-bad" in line]
    assert "Failed" in row, queued.status
    log = _queue_log(builder, "stack-bad")
    cause = [line for line in log.splitlines() if "train.optimizer" in line]
    assert cause, log
    record("dvc queue logs stack-bad: the cause", cause[0])
    assert server_runs(stack, "stack-bad") == [], "a run was opened before the params were checked"


def _runs_by_status(stack: Stack) -> dict[str, int]:
    with sqlalchemy.create_engine(stack.postgres_uri).connect() as database:
        rows = database.execute(sqlalchemy.text("SELECT status, count(*) FROM runs GROUP BY status")).all()
    return dict(sorted((status, count) for status, count in rows))


def _queue_log(builder: Built, name: str) -> str:
    done = builder.clone.dvc("queue", "logs", name, check=False)
    return (done.stdout + done.stderr)[-4000:]
