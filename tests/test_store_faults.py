"""A tracking store that fails: one line naming the store, the cause and the way out, and no output changed.

The stores are real: a SQLite file cut short, overwritten by another file or emptied; a full disk (a
small tmpfs that is full, where this process may mount) and a read-only one (the tmpfs remounted
read-only, or a read-only folder for a user who cannot mount). Every command that opens the store runs
against them as a subprocess, as DVC and a person run it: compare, evaluate, train, report, check --promote.
"""

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import REPO_ROOT, synthetic_digits
from test_os_errors import mount_tmpfs

from pipeline.data.splits import save_split

COMMANDS = {
    "compare": ["compare"],
    "evaluate": ["evaluate"],
    "train": ["train"],
    "report": ["report"],
    "check --promote": ["check", "--baseline", "reports/metrics.json", "--promote"],
}
PARAMS = {
    "model": {"intermediate_dim": 16},
    "train": {"epochs": 1, "experiment": "store-faults"},
    "evaluate": {"elbo_samples": 2, "is_samples": 4, "batch_size": 50, "sample_count": 50, "bootstrap_resamples": 4},
    "report": {"grid_size": 3, "n_samples": 4, "n_reconstructions": 2},
    "check": {"registered_models": {"encoder": "faults-encoder", "decoder": "faults-decoder"}},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project after a real train and evaluate on synthetic digits: its store holds the run and its models."""
    from pipeline.evaluate import main as evaluate
    from pipeline.sample_quality.classifier import build_classifier
    from pipeline.train import main as train

    root = tmp_path_factory.mktemp("trained")
    save_split(root / "data" / "prepared", "train", *synthetic_digits(200, seed=1))
    save_split(root / "data" / "prepared", "test", *synthetic_digits(50, seed=2))
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
        patch.delenv("DVC_ROOT", raising=False)
        patch.chdir(root)
        assert train(["--params", "params.yaml"]) == 0
        build_classifier(10).save(root / "models" / "classifier.keras")  # untrained: evaluate needs its features only
        assert evaluate(["--params", "params.yaml"]) == 0
    return root


@pytest.fixture
def project(trained: Path, tmp_path: Path) -> Path:
    """A copy of the trained project whose store lives in ``store/`` (where a test breaks it)."""
    root = tmp_path / "project"
    shutil.copytree(trained, root, ignore=shutil.ignore_patterns("mlflow.db*", "checkpoints"))
    (root / "store").mkdir()
    return root


def outputs(root: Path) -> dict[str, str]:
    """The SHA-256 of every file a command could write: models, reports, checkpoints, the store itself (not the
    empty lock file beside it, which serialises first use)."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for folder in ("models", "reports", "checkpoints", "store") if (root / folder).is_dir()
            for path in sorted((root / folder).rglob("*")) if path.is_file() and path.suffix != ".lock"}


def run(root: Path, command: str, *extra: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key not in ("DVC_ROOT", "PIPELINE_VERBOSE")}
    environment.update(PYTHONPATH=str(REPO_ROOT), MLFLOW_TRACKING_URI=f"sqlite:///{root}/store/mlflow.db", CI="1")
    return subprocess.run([sys.executable, "-m", "pipeline", *COMMANDS[command], "--params", "params.yaml", *extra],
                          cwd=root, env=environment, capture_output=True, text=True, timeout=600, check=False)


def assert_one_store_line(done: subprocess.CompletedProcess[str], command: str, store: Path, cause: str) -> None:
    """Exit 1 and exactly one line: ``<stage>: error: MLflow tracking store <file> <cause>…``."""
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(f"{COMMANDS[command][0]}: error: MLflow tracking store {store} {cause}"), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


def damage(kind: str, healthy: Path, store: Path) -> None:
    """Write ``store`` as a damaged copy of the ``healthy`` SQLite file."""
    data = healthy.read_bytes()
    if kind == "truncated":
        store.write_bytes(data[: len(data) // 2])
    elif kind == "overwritten":
        store.write_bytes((REPO_ROOT / "README.md").read_bytes())  # another file copied over it
    else:
        store.write_bytes(b"")


DAMAGE = {
    "truncated": "is damaged (database disk image is malformed): restore it from a backup, or set "
                 "MLFLOW_TRACKING_URI to a new store",
    "overwritten": "is not an SQLite database (file is not a database): restore it from a backup, or set "
                   "MLFLOW_TRACKING_URI to a new store",
    "emptied": "is empty (0 bytes): restore it from a backup, or delete it to start a new store",
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_a_damaged_store_file_is_one_line_naming_it_the_cause_and_the_way_out(
        kind: str, tmp_path: Path, empty_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.tracking.store import TrackingError, configure

    store = tmp_path / "mlflow.db"
    damage(kind, empty_store, store)
    before = store.read_bytes()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    with pytest.raises(TrackingError) as raised:
        configure(tmp_path)
    assert str(raised.value).startswith(f"MLflow tracking store {store} {DAMAGE[kind]}")
    assert "\n" not in str(raised.value)
    assert store.read_bytes() == before


@pytest.mark.integration  # a real training and evaluation, then each command in its own Python
@pytest.mark.parametrize("kind", sorted(DAMAGE))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_on_a_damaged_store_fails_in_one_line_and_changes_nothing(
        project: Path, trained: Path, command: str, kind: str) -> None:
    store = project / "store" / "mlflow.db"
    damage(kind, trained / "mlflow.db", store)
    before = outputs(project)
    done = run(project, command)
    assert_one_store_line(done, command, store, DAMAGE[kind])
    assert done.stdout == ""
    assert outputs(project) == before


@contextlib.contextmanager
def failing_store(kind: str, healthy: Path, folder: Path) -> Iterator[str]:
    """A copy of ``healthy`` in ``folder`` on a full or read-only disk; yield the cause the line must give.

    As root, ``folder`` is a small tmpfs, then filled or remounted read-only; a user who cannot mount
    gets a read-only folder, which SQLite reports as read-only too.
    """
    mounted = mount_tmpfs(folder, f"{healthy.stat().st_size + (64 << 10)}")
    if not mounted and os.geteuid() == 0:
        pytest.skip("root without permission to mount: no full or read-only disk can be made")
    try:
        shutil.copyfile(healthy, folder / "mlflow.db")
        if mounted and kind == "full":
            with contextlib.suppress(OSError), open(folder / "filler", "wb") as filler:
                while True:
                    filler.write(b"\0" * 4096)
                    filler.flush()
            yield "cannot grow: the disk is full (database or disk is full): free space on the disk under"
        elif mounted:
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, timeout=60)
            yield "is read-only (attempt to write a readonly database): make"
        else:
            (folder / "mlflow.db").chmod(0o444)
            folder.chmod(0o555)
            yield "is read-only (attempt to write a readonly database): make"
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False, timeout=60)
        else:
            folder.chmod(0o755)


@pytest.mark.integration  # a real training and evaluation, then each command in its own Python, three with TensorFlow
@pytest.mark.parametrize(("command", "kind"), [("train", "full"), ("evaluate", "full"), ("report", "full"),
                                               ("check --promote", "full"), ("check --promote", "read-only")])
def test_a_store_that_cannot_be_written_is_one_line_and_mlflows_own_log_is_held_back(
        project: Path, trained: Path, command: str, kind: str) -> None:
    store = project / "store" / "mlflow.db"
    with failing_store(kind, trained / "mlflow.db", project / "store") as cause:
        before = outputs(project)
        done = run(project, command)
        assert_one_store_line(done, command, store, cause)
        stage = COMMANDS[command][0]
        assert store.read_bytes() == (trained / "mlflow.db").read_bytes()
        changed = {path for path, digest in outputs(project).items() if before.get(path) != digest}
        # evaluate and report write their files, then add them to the run: DVC reruns the failed stage anyway
        written = {"evaluate": {"reports/metrics.json", "reports/per_class.csv", "reports/model.json"},
                   "report": {path for path in changed if path.startswith("reports/") and
                              path.endswith((".png", ".html", ".md"))}}.get(stage, set())
        assert changed <= written, changed
        assert not list(project.rglob(".*tmp-*"))
        if stage == "check":
            assert "promoted:" not in done.stdout


@pytest.mark.integration
def test_verbose_shows_mlflows_own_log_of_the_failure_before_the_line(project: Path, trained: Path) -> None:
    with failing_store("full", trained / "mlflow.db", project / "store"):
        done = run(project, "check --promote", "-v")
    assert done.returncode == 1
    assert "SQLAlchemy database error" in done.stderr and "[SQL: " in done.stderr
    assert done.stderr.splitlines()[-1].startswith(f"check: error: MLflow tracking store {project}/store/mlflow.db")


@pytest.mark.integration
def test_compare_reads_a_store_on_a_full_disk(project: Path, trained: Path) -> None:
    with failing_store("full", trained / "mlflow.db", project / "store"):
        done = run(project, "compare")
    assert done.returncode == 0, done.stderr
    assert "unconditional VAE" in done.stdout and "FINISHED" in done.stdout
