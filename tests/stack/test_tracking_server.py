"""``mlflow server`` on PostgreSQL with artifacts proxied to S3: the pipeline's runs land there complete.

The clones set only ``MLFLOW_TRACKING_URI``: no AWS variables, so every artifact reaches the bucket
through the server.
"""

import csv
import json
import sys
from pathlib import Path

import pytest
import servers
import sqlalchemy
from clones import metric
from clones import run as run_command
from mlflow.entities import LoggedModel, Run
from mlflow.tracking import MlflowClient
from team import MLFLOW_BUCKET, MLFLOW_PREFIX, QUEUED, Built, Queued, Stack, record

pytestmark = pytest.mark.stack

EXPERIMENT = "vae-mnist"
TEST_METRICS = ("test_neg_elbo", "test_nll_is", "test_reconstruction_loss", "test_kl_loss", "active_units")
FIGURES = ("manifold.png", "latent_scatter.png", "reconstructions.png", "samples.png", "learning_curves.png")
REPORT_ARTIFACTS = {*FIGURES, "index.html", "per_class.csv"}
LOGGED_MODELS = {"encoder", "decoder", "vae"}


def run_objects(stack: Stack, run: Run) -> list[str]:
    """The bucket keys of ``run``'s artifacts, relative to its artifact folder."""
    prefix = f"{MLFLOW_PREFIX}/{run.info.experiment_id}/{run.info.run_id}/artifacts/"
    return [key.removeprefix(prefix) for key in servers.object_keys(stack.s3_endpoint, MLFLOW_BUCKET, prefix)]


def model_objects(stack: Stack, model: LoggedModel) -> list[str]:
    """The bucket keys of a logged model's files, relative to its artifact folder."""
    prefix = model.artifact_location.replace("mlflow-artifacts:/", f"{MLFLOW_PREFIX}/", 1).rstrip("/") + "/"
    return [key.removeprefix(prefix) for key in servers.object_keys(stack.s3_endpoint, MLFLOW_BUCKET, prefix)]


def logged_models(stack: Stack, run: Run) -> dict[str, LoggedModel]:
    """The logged models ``run`` produced, by name."""
    found = MlflowClient(stack.tracking_uri).search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'")
    return {model.name: model for model in found}


def assert_complete(stack: Stack, run: Run) -> None:
    """FINISHED with test metrics; figures and report listed by the server and stored in the bucket, and
    the encoder, decoder and vae logged models stored there too."""
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info.artifact_uri
    missing = [name for name in TEST_METRICS if name not in run.data.metrics]
    assert not missing, f"evaluate logged no {missing}"
    client = MlflowClient(stack.tracking_uri)
    listed = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert listed >= REPORT_ARTIFACTS, f"missing artifacts {REPORT_ARTIFACTS - listed}"
    stored = set(run_objects(stack, run))
    assert stored >= REPORT_ARTIFACTS, f"bucket holds {sorted(stored)}"
    models = logged_models(stack, run)
    assert set(models) == LOGGED_MODELS, sorted(models)
    for name, model in models.items():
        assert model.artifact_location.startswith("mlflow-artifacts:/"), model.artifact_location
        files = model_objects(stack, model)
        assert "MLmodel" in files and any(key.endswith(".keras") for key in files), f"{name}: bucket holds {files}"


def server_runs(stack: Stack, dvc_experiment: str) -> list[Run]:
    client = MlflowClient(stack.tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None, f"no MLflow experiment {EXPERIMENT!r} on the server"
    return client.search_runs([experiment.experiment_id], f"tags.`dvc.experiment` = '{dvc_experiment}'")


def test_repro_lands_its_run_in_postgresql_and_its_artifacts_in_s3(builder: Built, stack: Stack) -> None:
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

    objects = run_objects(stack, run) + [key for model in logged_models(stack, run).values()
                                         for key in model_objects(stack, model)]
    record("objects of the repro's run and its 3 logged models in the bucket", len(objects))


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


def test_promoted_decoder_loads_by_alias_through_the_server(builder: Built, stack: Stack) -> None:
    promoted = builder.clone.pipeline("check", "--promote").stdout
    assert "models:/vae-mnist-decoder@champion" in promoted, promoted
    reference = json.loads((builder.clone.root / "models/run.json").read_text(encoding="utf-8"))
    client = MlflowClient(stack.tracking_uri)
    for part in ("encoder", "decoder"):
        version = client.get_model_version_by_alias(f"vae-mnist-{part}", "champion")
        assert version.run_id == reference["run_id"]
        assert version.source == f"models:/{reference['models'][part]}"  # the SQL registry keeps the model here
    with sqlalchemy.create_engine(stack.postgres_uri).connect() as database:
        aliases = database.execute(sqlalchemy.text("SELECT name, alias FROM registered_model_aliases")).all()
    assert sorted(aliases) == [("vae-mnist-decoder", "champion"), ("vae-mnist-encoder", "champion")]

    # a user with only MLFLOW_TRACKING_URI loads the model: registry in PostgreSQL, files from S3 via the server
    load = ("import mlflow, numpy; model = mlflow.pyfunc.load_model('models:/vae-mnist-decoder@champion'); "
            "print(model.predict(numpy.zeros((3, 2), 'float32')).shape)")
    shape = run_command([sys.executable, "-c", load], builder.clone.root, builder.clone.env).stdout
    assert shape.strip().splitlines()[-1] == "(3, 784)", shape


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
