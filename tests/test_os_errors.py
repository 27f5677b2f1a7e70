"""Operating-system errors on a stage's outputs: one line naming the path and the cause, no partial output.

The faults are real: a small tmpfs that fills up or is remounted read-only (where this process may
mount, as root in CI), a read-only folder for a user who cannot mount, a file size limit, a file where
a folder is expected and a folder where a file is. The stages run as subprocesses, as DVC runs them.
"""

import contextlib
import errno
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from helpers import REPO_ROOT, synthetic_digits

from pipeline.data.datasets import DATASETS
from pipeline.data.splits import save_split

OLD = b"the previous output, complete\n"
FILE_SIZE_LIMIT = 100_000  # bytes: train.npz of all-zero MNIST is ~180 KB


def mount_tmpfs(folder: Path, size: str) -> bool:
    """Mount a tmpfs of ``size`` on ``folder``; False where this process may not mount."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, check=False, timeout=60)
    return done.returncode == 0


@contextlib.contextmanager
def tmpfs(folder: Path, size: str = "64k") -> Iterator[bool]:
    """A small tmpfs on ``folder`` for the block (yields whether it could be mounted), unmounted after."""
    mounted = mount_tmpfs(folder, size)
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False, timeout=60)


def sparse_mnist(raw: Path) -> None:
    """The four MNIST files as the download stage leaves them, all zeros, sparse: no disk, real shapes."""
    folder = raw / "mnist"
    folder.mkdir(parents=True)
    for idx_file in DATASETS["mnist"].files.values():
        assert idx_file.shape is not None
        path = folder / idx_file.name
        path.write_bytes(bytes([0, 0, 0x08, len(idx_file.shape)])
                         + b"".join(size.to_bytes(4, "big") for size in idx_file.shape))
        os.truncate(path, idx_file.size)


def limit_file_size() -> None:
    """In the child: writes beyond FILE_SIZE_LIMIT fail with EFBIG instead of killing it with SIGXFSZ."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


@dataclass(frozen=True)
class Fault:
    """Where the prepare stage writes, which path its error must name, and the cause it must give."""

    out: Path
    stats: Path
    path: Path
    cause: str
    preexec: Callable[[], None] | None = None


def _old_outputs(folder: Path) -> None:
    for name in ("train.npz", "test.npz"):
        (folder / name).write_bytes(OLD)


@contextlib.contextmanager
def fault(kind: str, root: Path) -> Iterator[Fault]:
    """Set up one OS fault on the prepare stage's outputs under ``root``."""
    out, stats = root / "prepared", root / "stats.json"
    if kind in ("disk-full", "read-only"):
        with tmpfs(out) as mounted:
            _old_outputs(out)
            if kind == "disk-full":
                yield (Fault(out, stats, out / "train.npz", os.strerror(errno.ENOSPC)) if mounted else
                       Fault(out, stats, out / "train.npz", os.strerror(errno.EFBIG), limit_file_size))
            elif mounted:
                subprocess.run(["mount", "-o", "remount,ro", str(out)], check=True, timeout=60)
                yield Fault(out, stats, out / "train.npz", os.strerror(errno.EROFS))
            elif os.geteuid() != 0:
                out.chmod(0o555)
                try:
                    yield Fault(out, stats, out / "train.npz", os.strerror(errno.EACCES))
                finally:
                    out.chmod(0o755)
            else:
                pytest.skip("root without permission to mount: no read-only folder can be made")
    elif kind == "not-a-directory":
        (root / "a-file").write_bytes(OLD)
        yield Fault(root / "a-file" / "prepared", stats, root / "a-file" / "prepared", os.strerror(errno.ENOTDIR))
    else:  # is-a-directory: the stats file's name is taken by a folder
        stats.mkdir()
        (stats / "kept").write_bytes(OLD)
        yield Fault(out, stats, stats, os.strerror(errno.EISDIR))


@pytest.mark.parametrize("kind", ["disk-full", "read-only", "not-a-directory", "is-a-directory"])
def test_os_error_on_an_output_is_one_line_naming_path_and_cause_and_leaves_no_partial_file(
    tmp_path: Path, kind: str
) -> None:
    sparse_mnist(tmp_path / "raw")
    (tmp_path / "params.yaml").write_text("data:\n  dataset: mnist\n")
    with fault(kind, tmp_path) as injected:
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", "prepare", "--params", "params.yaml", "--raw", "raw",
             "--out", str(injected.out), "--stats", str(injected.stats)],
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True,
            timeout=300, preexec_fn=injected.preexec,
        )
        assert done.returncode == 1, done.stderr
        assert done.stderr == f"prepare: error: {injected.path}: {injected.cause}\n"
        leftovers = [path for path in tmp_path.rglob(".*tmp-*")]
        assert not leftovers, leftovers
        if kind in ("disk-full", "read-only"):
            assert sorted(path.name for path in injected.out.iterdir()) == ["test.npz", "train.npz"]
            assert all(path.read_bytes() == OLD for path in injected.out.iterdir())
        assert not injected.stats.is_file()
    if kind == "is-a-directory":
        assert [path.name for path in injected.stats.iterdir()] == ["kept"]


def test_os_error_on_an_input_is_one_line_naming_the_path(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "prepare", "--params", "params.yaml", "--raw", "raw", "--out", "out",
         "--stats", "stats.json"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, timeout=300,
    )
    assert (done.returncode, done.stderr) == (1, "prepare: error: cannot read params.yaml: Is a directory\n")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["params.yaml"]


@pytest.mark.integration
def test_disk_full_while_saving_the_model_is_one_line_the_old_model_intact_and_the_run_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_store: Path
) -> None:
    """The reported case: a full disk under models/ printed a traceback ending in ``OSError: [Errno 28]``."""
    import io

    from mlflow.tracking import MlflowClient

    from pipeline.train import main

    prepared = tmp_path / "data" / "prepared"
    save_split(prepared, "train", *synthetic_digits(300, seed=1))
    save_split(prepared, "test", *synthetic_digits(100, seed=2))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "model": {"intermediate_dim": 32}, "train": {"epochs": 1, "experiment": "vae-disk-full"}}))
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    models = tmp_path / "models"
    with tmpfs(models, "64k") as mounted:
        if not mounted and os.geteuid() == 0:
            pytest.skip("root without permission to mount: no full disk can be made")
        for name in ("vae.keras", "run.json"):
            (models / name).write_bytes(OLD)
        if not mounted:
            models.chmod(0o555)  # a user who cannot mount: a read-only folder, the same kind of fault
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                code = main(["--params", "params.yaml"])
        finally:
            models.chmod(0o755)
        cause = os.strerror(errno.ENOSPC if mounted else errno.EACCES)
        assert code == 1
        errors = [line for line in stderr.getvalue().splitlines() if line.startswith("train:")]
        assert errors == [f"train: error: {Path('models') / 'vae.keras'}: {cause}"], stderr.getvalue()
        assert "Traceback" not in stderr.getvalue()
        assert sorted(path.name for path in models.iterdir()) == ["run.json", "vae.keras"]
        assert all(re.fullmatch(re.escape(OLD.decode()), path.read_text()) for path in models.iterdir())
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    [run] = client.search_runs([client.get_experiment_by_name("vae-disk-full").experiment_id])
    assert run.info.status == "FAILED"
    assert not (tmp_path / "reports" / "train_history.csv").exists()
