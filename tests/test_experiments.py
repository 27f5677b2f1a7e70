"""DVC experiments end to end in a clone: each lands one complete MLflow run in the clone's own store.

One module-wide clone of the repository (with the working tree's uncommitted changes to tracked
files applied) builds download and prepare once; every experiment then trains for one epoch with
cheap evaluate and report settings, and the queued ones run together with two workers. ``dvc`` runs as
a subprocess of this interpreter, with the venv's ``python`` first on ``PATH`` for the stage commands and
no ``MLFLOW_TRACKING_URI``, so the pipeline falls back to ``<clone>/mlflow.db`` exactly as it does for a user.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from clones import Clone, clone_environment, clone_repository, metric, small_overrides
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.clones

EXPERIMENT = "vae-mnist"
TEST_METRICS = ("test_neg_elbo", "test_nll_is", "test_reconstruction_loss", "test_kl_loss", "active_units")
REPORT_ARTIFACTS = {"index.html", "explorer.html", "manifold.png", "latent_scatter.png", "reconstructions.png",
                    "samples.png", "learning_curves.png", "per_class.csv"}
LOGGED_MODELS = {"encoder", "decoder", "vae"}


@dataclass(frozen=True)
class Project(Clone):
    """A clone of the repository with download and prepare built and cached."""

    def client(self) -> MlflowClient:
        """A client of the store the pipeline uses by default: the clone's ``mlflow.db``."""
        return MlflowClient(tracking_uri=f"sqlite:///{self.root / 'mlflow.db'}")

    def run_of(self, name: str) -> Run:
        """The one MLflow run tagged with DVC experiment ``name``."""
        client = self.client()
        experiment = client.get_experiment_by_name(EXPERIMENT)
        assert experiment is not None, f"no MLflow experiment {EXPERIMENT!r} in {self.root / 'mlflow.db'}"
        runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`dvc.experiment` = '{name}'")
        assert len(runs) == 1, f"{len(runs)} MLflow runs tagged dvc.experiment={name}"
        return runs[0]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> Project:
    """Clone the repository, apply its uncommitted changes, and build download and prepare."""
    root = clone_repository(tmp_path_factory.mktemp("experiments") / "clone")
    # a notebook's MPLBACKEND: the report renders headless anyway
    project = Project(root, clone_environment(mnist_dir, MPLBACKEND="module://matplotlib_inline.backend_inline"))
    project.dvc("repro", "prepare")
    return project


QUEUED = {"exp-queue-a": ("train.beta=0.5",), "exp-queue-b": ("train.beta=2.0",),
          "exp-cvae": ("model.conditional=true", "train.beta=0.1")}
"""The experiments queued together and run by two workers: two VAEs, then the conditional VAE."""


@pytest.fixture(scope="module")
def queued(project: Project) -> dict[str, dict]:
    """``QUEUED`` through ``dvc queue start -j 2``; ``dvc exp show`` once every one succeeded or failed."""
    for name, params in QUEUED.items():
        project.dvc("exp", "run", "--queue", "-n", name, *small_overrides(*params))
    project.dvc("queue", "start", "-j", "2")
    return project.wait_for_queue(tuple(QUEUED))


def assert_complete_run(project: Project, name: str, beta: str) -> Run:
    """The run is FINISHED, named after the experiment, and holds test metrics and report files."""
    run = project.run_of(name)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == name
    assert run.data.params["train.beta"] == beta
    assert run.data.params["train.epochs"] == "1"
    missing = [metric for metric in TEST_METRICS if metric not in run.data.metrics]
    assert not missing, f"{name}: evaluate logged no {missing}"
    artifacts = {item.path for item in project.client().list_artifacts(run.info.run_id)}
    assert artifacts >= REPORT_ARTIFACTS, f"{name}: missing artifacts {REPORT_ARTIFACTS - artifacts}"
    logged = {project.client().get_logged_model(output.model_id).name for output in run.outputs.model_outputs}
    assert logged == LOGGED_MODELS, f"{name}: logged models {logged}"
    assert run.info.artifact_uri.startswith((project.root / "mlartifacts").as_uri()), run.info.artifact_uri
    return run


def active_span(project: Project, name: str) -> tuple[int, int]:
    """Milliseconds from the start of training to evaluate logging its metrics: the stretch of store writes."""
    run = project.run_of(name)
    [evaluated] = project.client().get_metric_history(run.info.run_id, "test_neg_elbo")
    return run.info.start_time, evaluated.timestamp


def test_exp_run_lands_finished_named_run_with_metrics_equal_to_exp_show(project: Project) -> None:
    project.dvc("exp", "run", "-n", "exp-beta1", *small_overrides("train.beta=1.0"))
    run = assert_complete_run(project, "exp-beta1", beta="1.0")
    shown = project.experiments()
    assert "exp-beta1" in shown, f"dvc exp show lists {sorted(shown)}"
    for name in TEST_METRICS:
        assert metric(shown, "exp-beta1", name) == pytest.approx(run.data.metrics[name], rel=1e-12), name


def test_two_queued_experiments_run_in_parallel_into_the_main_store(project: Project, queued: dict) -> None:
    variants = {"exp-queue-a": "0.5", "exp-queue-b": "2.0"}
    for name, beta in variants.items():
        state = queued[name]["executor"]["state"]
        assert state == "success", f"{name} {state}:\n{project.queue_log(name)}"
        run = assert_complete_run(project, name, beta=beta)
        assert metric(queued, name, "test_neg_elbo") == pytest.approx(run.data.metrics["test_neg_elbo"], rel=1e-12)
    (start_a, end_a), (start_b, end_b) = (active_span(project, name) for name in variants)
    assert start_a < end_b and start_b < end_a, "the experiments did not overlap: -j 2 ran them one by one"


def test_relative_tracking_uri_and_mirror_in_a_temp_experiment_land_in_the_project(
    project: Project, tmp_path: Path, mnist_dir: Path
) -> None:
    """The reported case: ``MLFLOW_TRACKING_URI=sqlite:///mlflow.db dvc exp run --temp`` exited 0 with its run in
    a store under .dvc/tmp/exps/, which DVC deletes. A relative mirror in params resolved there too.

    Then the same params again: DVC restores every stage from its run cache, and the restored run.json
    names the run that the project's store holds.
    """
    mirror = project.root.parent / "mnist-mirror"  # "../mnist-mirror" from the root, not from a temp copy
    if not mirror.exists():
        mirror.symlink_to(mnist_dir, target_is_directory=True)
    env = {key: value for key, value in project.env.items() if key != "MNIST_MIRROR"}
    relative = Project(project.root, env | {"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"})
    settings = small_overrides("data.mirrors=[../mnist-mirror]", "train.seed=3", "train.beta=0.5")
    relative.dvc("exp", "run", "--temp", "-n", "exp-relative", *settings)
    run = assert_complete_run(project, "exp-relative", beta="0.5")
    assert not list((project.root / ".dvc" / "tmp").rglob("mlflow.db"))

    again = relative.dvc("exp", "run", "--temp", "-n", "exp-relative-again", *settings)
    assert "Stage 'train' is cached - skipping run" in again.stdout + again.stderr
    shown = project.experiments()
    restored = tmp_path / "run.json"
    project.dvc("get", str(project.root), "models/run.json", "--rev", shown["exp-relative-again"]["rev"],
                "-o", str(restored))
    assert json.loads(restored.read_text())["run_id"] == run.info.run_id
    assert project.client().get_run(run.info.run_id).info.status == "FINISHED"


def test_a_conditional_experiment_builds_every_stage_and_the_gate_refuses_it_against_the_vae(
        project: Project, queued: dict) -> None:
    state = queued["exp-cvae"]["executor"]["state"]
    assert state == "success", f"exp-cvae {state}:\n{project.queue_log('exp-cvae')}"
    run = assert_complete_run(project, "exp-cvae", beta="0.1")
    assert run.data.params["model.conditional"] == "True" and run.data.tags["model.kind"] == "cvae"
    shown = queued["exp-cvae"]["data"]["metrics"]
    assert shown["reports/model.json"]["data"] == {"kind": "cvae", "likelihood": "p(x|y)", "num_classes": 10}
    assert shown["reports/metrics.json"]["data"]["test_neg_elbo"] == pytest.approx(
        run.data.metrics["test_neg_elbo"], rel=1e-12)
    baseline = project.root / "vae_metrics.json"
    baseline.write_text(json.dumps(shown["reports/metrics.json"]["data"]))
    project.dvc("exp", "apply", "exp-cvae")  # its outputs in the workspace, where the gate reads them
    done = project.pipeline("check", "--baseline", str(baseline), check=False)
    assert done.returncode == 1 and done.stdout == ""
    assert "the baseline is from the unconditional VAE, the new metrics from the conditional VAE" in done.stderr
