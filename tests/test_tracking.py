"""MLflow wiring: where the store is, how runs open and close, and what later stages add, on real stores."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from helpers import free_port, git
from mlflow.tracking import MlflowClient

from pipeline.core.params import Params
from pipeline.tracking import store
from pipeline.tracking.git_state import git_tags
from pipeline.tracking.run_data import log_epoch, log_results
from pipeline.tracking.run_file import RunRef, open_training_run, read_run_ref, write_run_ref
from pipeline.tracking.run_lifecycle import PIPELINE_TAG, ensure_experiment, training_run
from pipeline.tracking.store import TrackingError, configure, project_root

SERVER_START_TIMEOUT_S = 180.0



@pytest.fixture(autouse=True)
def sqlite_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_store: Path) -> str:
    """A fresh SQLite store in tmp_path, the working directory there, and no DVC variables."""
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # setenv first so teardown restores the variable even after mlflow.set_tracking_uri rewrites it.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    return uri


def git_repo(root: Path) -> str:
    """A repository with one committed file; return the commit."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q")
    (root / "params.yaml").write_text("train:\n  epochs: 1\n")
    git(root, "add", "params.yaml")
    git(root, "commit", "-q", "-m", "initial")
    return git(root, "rev-parse", "HEAD").strip()


def only_run(experiment: str) -> mlflow.entities.Run:
    client = MlflowClient()
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id])
    assert len(runs) == 1
    return runs[0]


# --- where the store is ---------------------------------------------------------------------------


def test_project_root_strips_dvc_temporary_experiment_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DVC_ROOT", "/x/repo/.dvc/tmp/exps/tmpabc")
    assert project_root() == Path("/x/repo")


def test_project_root_is_dvc_root_when_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "checkout"
    elsewhere.mkdir()
    monkeypatch.setenv("DVC_ROOT", str(elsewhere))
    assert project_root() == elsewhere.resolve()


def test_project_root_is_working_directory_without_dvc_root(tmp_path: Path) -> None:
    assert project_root() == tmp_path.resolve()


def test_project_root_strips_temporary_copy_used_as_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpabc"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    assert project_root() == (tmp_path / "repo").resolve()


def test_default_tracking_uri_is_sqlite_file_at_project_root() -> None:
    assert store.default_tracking_uri(Path("/x/repo")) == "sqlite:////x/repo/mlflow.db"


def test_configure_without_tracking_uri_uses_store_of_real_root_from_temporary_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpabc"))
    uri = configure()
    assert uri == f"sqlite:///{tmp_path.resolve()}/repo/mlflow.db"
    assert mlflow.get_tracking_uri() == uri


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("sqlite:///mlflow.db", "sqlite:///{root}/mlflow.db"),
        ("sqlite:///stores/team.db?timeout=30", "sqlite:///{root}/stores/team.db?timeout=30"),
        ("file:mlruns", "file://{root}/mlruns"),
        ("file:./mlruns", "file://{root}/mlruns"),
        ("mlruns", "{root}/mlruns"),
        ("./mlruns", "{root}/mlruns"),
    ],
)
def test_relative_tracking_uri_is_taken_against_the_project_root_from_a_temporary_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relative: str, expected: str
) -> None:
    """DVC runs ``--temp`` and queued experiments in a copy it deletes: a store there would be lost."""
    copy = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpabc"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(copy))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", relative)
    assert store.configure() == expected.format(root=(tmp_path / "repo").resolve())


@pytest.mark.parametrize(
    "uri", ["sqlite:////abs/mlflow.db", "sqlite://", "sqlite:///:memory:", "file:///abs/mlruns",
            "postgresql://user@db.example/mlflow", "https://mlflow.example", "databricks", "/abs/mlruns"],
)
def test_absolute_or_remote_tracking_uri_is_kept(uri: str) -> None:
    assert store.anchored_tracking_uri(uri, Path("/x/repo")) == uri


def test_relative_sqlite_uri_lands_the_run_in_the_project_store_not_in_the_temporary_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_store: Path
) -> None:
    """The reported case: MLFLOW_TRACKING_URI=sqlite:///mlflow.db and dvc exp run --temp lost the run."""
    root = tmp_path / "repo"
    copy = root / ".dvc" / "tmp" / "exps" / "tmpabc"
    copy.mkdir(parents=True)
    shutil.copyfile(empty_store, root / "mlflow.db")
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(copy))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    with training_run("vae-relative", {}, {}) as ref:
        pass
    write_run_ref(copy / "run.json", ref)
    assert ref.tracking_uri == f"sqlite:///{root.resolve()}/mlflow.db"
    assert not (copy / "mlflow.db").exists()
    stored = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db").get_run(ref.run_id)
    assert stored.info.status == "FINISHED"
    assert open_training_run(copy / "run.json") == ref


def test_configure_prefers_mlflow_tracking_uri(sqlite_store: str) -> None:
    assert configure(root=Path("/elsewhere")) == sqlite_store
    assert mlflow.get_tracking_uri() == sqlite_store


def test_configure_fails_fast_with_one_line_naming_an_unreachable_server(monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    started = time.monotonic()
    with pytest.raises(TrackingError) as raised:
        configure()
    assert time.monotonic() - started < 4.0
    message = str(raised.value)
    assert uri in message
    assert "\n" not in message


def test_ensure_experiment_creates_once_and_returns_same_id(tmp_path: Path) -> None:
    configure()
    first = ensure_experiment("vae-test")
    assert ensure_experiment("vae-test") == first
    experiments = [e for e in MlflowClient().search_experiments() if e.name == "vae-test"]
    assert [e.experiment_id for e in experiments] == [first]
    assert experiments[0].artifact_location == (tmp_path.resolve() / "mlartifacts").as_uri()


def test_ensure_experiment_in_temporary_copy_keeps_artifacts_under_real_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpabc"))
    configure()
    experiment_id = ensure_experiment("vae-test")
    location = MlflowClient().get_experiment(experiment_id).artifact_location
    assert location == (tmp_path.resolve() / "repo" / "mlartifacts").as_uri()


def test_experiment_opens_in_the_model_training_view_unless_someone_chose_another() -> None:
    configure()
    client = MlflowClient()
    experiment_id = ensure_experiment("vae-test")
    assert client.get_experiment(experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    client.set_experiment_tag(experiment_id, "mlflow.experimentKind", "genai_development")
    ensure_experiment("vae-test")
    assert client.get_experiment(experiment_id).tags["mlflow.experimentKind"] == "genai_development"
    older = client.create_experiment("made-before-kinds")
    ensure_experiment("made-before-kinds")
    assert client.get_experiment(older).tags["mlflow.experimentKind"] == "custom_model_development"


def test_training_run_in_experiment_deleted_from_ui_raises_tracking_error() -> None:
    configure()
    MlflowClient().delete_experiment(ensure_experiment("vae-test"))
    with pytest.raises(TrackingError, match="vae-test"), training_run("vae-test", {}, {}):
        pass


# --- opening and closing the training run -----------------------------------------------------------


def test_git_tags_name_commit_and_whether_tracked_files_changed(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    commit = git_repo(repo)
    (repo / "untracked.txt").write_text("ignored by the dirty check\n")
    assert git_tags(repo) == {"mlflow.source.git.commit": commit, "git.dirty": "false"}
    (repo / "params.yaml").write_text("train:\n  epochs: 2\n")
    assert git_tags(repo) == {"mlflow.source.git.commit": commit, "git.dirty": "true"}


DVC_YAML = """\
stages:
  build:
    cmd: python code.py
    deps: [code.py]
    outs:
      - models/model.bin
      - data/prepared
    metrics:
      - reports/metrics.json:
          cache: false
    plots:
      - reports/history.csv:
          cache: false
"""
REWRITTEN_BY_DVC = ["dvc.lock", "reports/metrics.json", "reports/history.csv", ".gitignore", "models/.gitignore",
                    "models/model.bin", "data/prepared/train.npz"]


def dvc_project(root: Path) -> str:
    """A repository with a dvc.yaml and every file DVC may rewrite committed; return the commit."""
    git_repo(root)
    (root / "dvc.yaml").write_text(DVC_YAML)
    (root / "code.py").write_text("print('v1')\n")
    for path in REWRITTEN_BY_DVC:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("committed\n")
    git(root, "add", "-f", ".")
    git(root, "commit", "-q", "-m", "project")
    return git(root, "rev-parse", "HEAD").strip()


@pytest.mark.parametrize("path", REWRITTEN_BY_DVC)
def test_files_dvc_rewrites_do_not_make_the_work_tree_dirty(tmp_path: Path, path: str) -> None:
    """dvc.lock, the stages' outputs (files, files in output folders, git-tracked metrics and plots) and
    .gitignore files change under ``dvc repro`` before train starts: not a change to the code."""
    repo = tmp_path / "repo"
    commit = dvc_project(repo)
    (repo / path).write_text("rewritten by dvc\n")
    git(repo, "add", "-f", path)  # staged or not, the same
    assert git_tags(repo) == {"mlflow.source.git.commit": commit, "git.dirty": "false"}


@pytest.mark.parametrize("path", ["code.py", "params.yaml", "dvc.yaml", "reports/other.json"])
def test_any_other_tracked_change_still_makes_the_work_tree_dirty(tmp_path: Path, path: str) -> None:
    repo = tmp_path / "repo"
    dvc_project(repo)
    if path == "reports/other.json":
        (repo / path).write_text("{}\n")
        git(repo, "add", path)
        git(repo, "commit", "-q", "-m", "another report")
    (repo / "dvc.lock").write_text("rewritten by dvc\n")
    (repo / path).write_text((repo / path).read_text() + "# changed\n")
    assert git_tags(repo)["git.dirty"] == "true"


@pytest.mark.clones  # git and dvc repro in a project
def test_a_real_dvc_repro_leaves_the_work_tree_clean(tmp_path: Path) -> None:
    """The reported case: in a fresh clone the stages before train rewrite dvc.lock and .gitignore."""
    repo = tmp_path / "repo"
    git_repo(repo)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=repo, check=True, capture_output=True, timeout=600)
    (repo / "code.py").write_text(
        "import pathlib, time\n"
        "pathlib.Path('models').mkdir(exist_ok=True)\n"
        "pathlib.Path('models/model.bin').write_text(str(time.time()))\n"
        "pathlib.Path('data/prepared').mkdir(parents=True, exist_ok=True)\n"
        "pathlib.Path('data/prepared/train.npz').write_text(str(time.time()))\n"
        "pathlib.Path('reports').mkdir(exist_ok=True)\n"
        "pathlib.Path('reports/metrics.json').write_text('{\"t\": %f}' % time.time())\n"
        "pathlib.Path('reports/history.csv').write_text('epoch\\n1\\n')\n"
    )
    (repo / "dvc.yaml").write_text(DVC_YAML.replace("python code.py", f"{sys.executable} code.py"))
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    for committed in ("reports/metrics.json", "reports/history.csv", ".gitignore"):
        (repo / committed).parent.mkdir(parents=True, exist_ok=True)
        (repo / committed).write_text("")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "project")
    done = subprocess.run([sys.executable, "-m", "dvc", "repro", "-q"], cwd=repo, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert git(repo, "status", "--porcelain", "--untracked-files=no"), "dvc repro changed no tracked file"
    assert git_tags(repo)["git.dirty"] == "false"
    (repo / "code.py").write_text((repo / "code.py").read_text() + "# changed\n")
    assert git_tags(repo)["git.dirty"] == "true"


def test_git_tags_outside_a_repository_say_unknown(tmp_path: Path) -> None:
    assert git_tags(tmp_path) == {"mlflow.source.git.commit": "unknown", "git.dirty": "unknown"}


def test_training_run_records_all_params_and_tags_and_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_store: str
) -> None:
    repo = tmp_path / "repo"
    commit = git_repo(repo)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("DVC_EXP_NAME", "exp-lr-up")
    flat = Params().flat()

    with training_run("vae-test", flat, {"dataset": "mnist"}) as ref:
        assert mlflow.active_run().info.run_id == ref.run_id

    assert mlflow.active_run() is None
    run = MlflowClient().get_run(ref.run_id)
    assert ref == RunRef(ref.run_id, run.info.experiment_id, sqlite_store)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "exp-lr-up"
    assert set(run.data.params) == set(flat)
    assert run.data.params["train.epochs"] == str(flat["train.epochs"])
    assert run.data.params["train.optimizer"] == flat["train.optimizer"]
    assert json.loads(run.data.params["report.grid_range"]) == list(flat["report.grid_range"])
    assert run.data.tags["mlflow.source.git.commit"] == commit
    assert run.data.tags["git.dirty"] == "false"
    assert run.data.tags["dataset"] == "mnist"
    assert run.data.tags["dvc.experiment"] == "exp-lr-up"
    assert run.data.tags[PIPELINE_TAG] == "train"


def test_training_run_outside_dvc_experiment_has_no_experiment_tag() -> None:
    with training_run("vae-test", {"train.epochs": 1}, {}) as ref:
        pass
    run = MlflowClient().get_run(ref.run_id)
    assert "dvc.experiment" not in run.data.tags
    assert run.data.tags["mlflow.source.git.commit"] == "unknown"
    assert run.info.status == "FINISHED"


def test_training_run_is_failed_when_the_body_raises() -> None:
    with pytest.raises(RuntimeError, match="diverged"), training_run("vae-test", {"train.epochs": 1}, {}):
        raise RuntimeError("diverged")
    assert mlflow.active_run() is None
    assert only_run("vae-test").info.status == "FAILED"


def test_training_run_is_killed_on_keyboard_interrupt() -> None:
    with pytest.raises(KeyboardInterrupt), training_run("vae-test", {"train.epochs": 1}, {}):
        raise KeyboardInterrupt
    assert mlflow.active_run() is None
    assert only_run("vae-test").info.status == "KILLED"


def test_log_epoch_steps_count_epochs_from_one() -> None:
    with training_run("vae-test", {}, {}) as ref:
        log_epoch(0, {"loss": 3.0, "val_loss": 4.0})
        log_epoch(1, {"loss": 2.0, "val_loss": 3.5})
    history = MlflowClient().get_metric_history(ref.run_id, "loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(1, 3.0), (2, 2.0)]


# --- the run reference and what later stages add -------------------------------------------------------


@pytest.mark.parametrize("models", [{}, {"encoder": "m-1", "decoder": "m-2"}])
def test_run_ref_round_trips_through_its_file(tmp_path: Path, models: dict[str, str]) -> None:
    ref = RunRef("a" * 32, "3", "sqlite:////x/mlflow.db", models)
    path = tmp_path / "models" / "run.json"
    write_run_ref(path, ref)
    assert read_run_ref(path) == ref


def test_run_json_of_a_training_before_logged_models_reads_with_none(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text('{"run_id": "a", "experiment_id": "1", "tracking_uri": "sqlite:///x"}')
    assert read_run_ref(path).models == {}


GARBLED_RUN_FILES = {
    "missing": None,
    "not-json": "not json {",
    "missing-keys": '{"run_id": "abc"}',
    "not-an-object": '["abc", "1", "sqlite:///x"]',
    "unknown-key": '{"run_id": "a", "experiment_id": "1", "tracking_uri": "u", "extra": 1}',
}


@pytest.mark.parametrize("content", GARBLED_RUN_FILES.values(), ids=GARBLED_RUN_FILES.keys())
def test_read_run_ref_of_missing_or_garbled_file_raises_tracking_error(
    tmp_path: Path, content: str | None
) -> None:
    path = tmp_path / "run.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(TrackingError, match="run.json"):
        read_run_ref(path)


@pytest.mark.parametrize("store_file", ["present", "absent"])
def test_open_training_run_of_run_absent_from_store_says_where_it_was_recorded_and_how_to_train_again(
    tmp_path: Path, sqlite_store: str, store_file: str
) -> None:
    """A model restored from DVC's run cache names the run that first trained it, maybe in another store."""
    if store_file == "absent":
        (tmp_path / "mlflow.db").unlink()
    path = tmp_path / "run.json"
    write_run_ref(path, RunRef("0" * 32, "1", "sqlite:////elsewhere/mlflow.db"))
    with pytest.raises(TrackingError) as raised:
        open_training_run(path)
    assert str(raised.value) == (
        f"run {'0' * 32} from {path} is not in the tracking store {sqlite_store} (it was recorded in "
        "sqlite:////elsewhere/mlflow.db); to train again and record a new one: "
        "dvc repro --force --single-item train, then dvc repro"
    )
    assert not (tmp_path / "mlflow.db").exists() or store_file == "present"


@pytest.mark.parametrize("stage", ["evaluate", "report"])
def test_stage_reading_a_run_the_store_lacks_fails_with_one_line_before_loading_the_model(
    tmp_path: Path, sqlite_store: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    stage: str,
) -> None:
    import importlib

    from pipeline.data.splits import save_split

    monkeypatch.setitem(sys.modules, "pipeline.model.trained_vae", None)  # a tripwire: loading the model raises
    save_split(tmp_path / "prepared", "test", np.zeros((3, 784), np.float32), np.zeros(3, np.uint8))
    (tmp_path / "vae.keras").write_bytes(b"never read")
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "history.csv").write_text("epoch,loss,neg_elbo,kl_loss\n1,1.0,1.0,1.0\n")
    (tmp_path / "params.yaml").write_text("evaluate: {sample_count: 3, nearest_neighbors: 2}\n")
    write_run_ref(tmp_path / "run.json", RunRef("0" * 32, "1", sqlite_store))
    extra = ["--metrics", "metrics.json"] + (["--history", "history.csv", "--out", "out"] if stage == "report" else
                                             ["--per-class", "out/per_class.csv", "--classifier", "vae.keras"])
    code = importlib.import_module(f"pipeline.{stage}").main(
        ["--prepared", "prepared", "--model", "vae.keras", "--run", "run.json", *extra])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and err.startswith(f"{stage}: error: run {'0' * 32} from run.json is not in"), err
    assert err.rstrip().endswith("to train again and record a new one: dvc repro --force --single-item train, "
                                 "then dvc repro")
    assert not (tmp_path / "out").exists()


def test_open_training_run_returns_recorded_run(tmp_path: Path) -> None:
    with training_run("vae-test", {}, {}) as ref:
        pass
    path = tmp_path / "run.json"
    write_run_ref(path, ref)
    assert open_training_run(path) == ref


def test_open_training_run_of_run_deleted_from_ui_raises_tracking_error(tmp_path: Path) -> None:
    with training_run("vae-test", {}, {}) as ref:
        pass
    MlflowClient().delete_run(ref.run_id)
    path = tmp_path / "run.json"
    write_run_ref(path, ref)
    with pytest.raises(TrackingError, match=ref.run_id):
        log_results(open_training_run(path), {"test_neg_elbo": 1.0})


def test_log_results_adds_metrics_and_artifact_without_reopening_run(tmp_path: Path) -> None:
    with training_run("vae-test", {}, {}) as ref:
        pass
    client = MlflowClient()
    finished = client.get_run(ref.run_id).info
    report = tmp_path / "metrics.json"
    report.write_text('{"test_neg_elbo": 101.5}\n')

    log_results(ref, {"test_neg_elbo": 101.5, "test_kl_loss": 7}, [report])

    run = client.get_run(ref.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.end_time == finished.end_time
    assert run.data.metrics == {"test_neg_elbo": 101.5, "test_kl_loss": 7.0}
    assert [a.path for a in client.list_artifacts(ref.run_id)] == ["metrics.json"]
    copy = client.download_artifacts(ref.run_id, "metrics.json", str(tmp_path / "download"))
    assert Path(copy).read_text() == report.read_text()


def test_log_results_links_the_metrics_to_each_logged_model_of_the_run() -> None:
    with training_run("vae-test", {}, {}) as ref:
        pass
    client = MlflowClient()
    models = {name: client.create_logged_model(ref.experiment_id, name=name, source_run_id=ref.run_id).model_id
              for name in ("encoder", "decoder")}
    log_results(RunRef(ref.run_id, ref.experiment_id, ref.tracking_uri, models), {"test_neg_elbo": 101.5})
    for model_id in models.values():
        linked = client.get_logged_model(model_id).metrics
        assert [(metric.key, metric.value, metric.run_id) for metric in linked] == [
            ("test_neg_elbo", 101.5, ref.run_id)]
    assert client.get_run(ref.run_id).data.metrics == {"test_neg_elbo": 101.5}
    assert len(client.get_metric_history(ref.run_id, "test_neg_elbo")) == 1


# --- a real tracking server --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory, empty_store: Path) -> Iterator[tuple[str, Path]]:
    """``mlflow server`` on a free 127.0.0.1 port with its own SQLite store; yields (uri, artifacts folder)."""
    folder = tmp_path_factory.mktemp("server")
    shutil.copyfile(empty_store, folder / "server.db")
    port, artifacts = free_port(), folder / "art"
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no job runner processes: faster start
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--backend-store-uri", f"sqlite:///{folder}/server.db",
               "--artifacts-destination", str(artifacts)]
    log = folder / "server.log"
    with open(log, "wb") as output:
        server = subprocess.Popen(command, cwd=folder, env=env, stdout=output, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not _healthy(uri):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not become healthy:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield uri, artifacts
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the uvicorn worker it spawned
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.integration
def test_training_run_lands_on_tracking_server(
    mlflow_server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_store: str
) -> None:
    uri, artifacts = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    report = tmp_path / "metrics.json"
    report.write_text("{}\n")

    with training_run("vae-server", {"train.epochs": 2}, {"dataset": "mnist"}) as ref:
        log_epoch(0, {"loss": 5.0})
    log_results(ref, {"test_neg_elbo": 99.0}, [report])

    assert ref.tracking_uri == uri
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(ref.run_id)
    assert client.get_experiment(ref.experiment_id).name == "vae-server"
    assert run.info.status == "FINISHED"
    assert run.data.params == {"train.epochs": "2"}
    assert run.data.tags["dataset"] == "mnist"
    assert run.data.tags[PIPELINE_TAG] == "train"
    assert run.data.metrics == {"loss": 5.0, "test_neg_elbo": 99.0}
    assert [a.path for a in client.list_artifacts(ref.run_id)] == ["metrics.json"]
    assert [path.name for path in artifacts.rglob("metrics.json")] == ["metrics.json"]
    assert MlflowClient(tracking_uri=sqlite_store).get_experiment_by_name("vae-server") is None
    assert not (tmp_path / "mlartifacts").exists()
