"""Fixtures shared by the test tiers."""

import os
import shutil
from pathlib import Path

import pytest
from helpers import REPO_ROOT, SHARED_MNIST
from tiers import TIERS, tier_problem

import pipeline  # noqa: F401  (sets TensorFlow's log level before a test imports Keras)

# The test process runs Keras on TensorFlow whatever the shell or ~/.keras/keras.json says; tests of a shared
# behaviour run their work on JAX too, in a worker process (tests/backends.py).
os.environ["KERAS_BACKEND"] = "tensorflow"


@pytest.hookimpl(tryfirst=True)  # before -m deselects: `-m 'not slow'` must see the slow marker added here
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test in a slow tier ``slow``, so the default run leaves it out; stop the run where a test is in
    two tiers, or marked ``slow`` in none (``-m "slow and not (integration or ...)"`` would be its only way in)."""
    problems = []
    for item in items:
        names = {mark.name for mark in item.iter_markers()}
        problem = tier_problem(names)
        if problem:
            problems.append(f"{item.nodeid}: {problem}")
        elif names.intersection(TIERS):
            item.add_marker(pytest.mark.slow)
    if problems:
        raise pytest.UsageError("test tiers:\n" + "\n".join(problems))


def _mnist_folders() -> list[Path]:
    """Where the MNIST files may be, in the download stage's order: ``$DATA_MIRROR/mnist``, ``$MNIST_MIRROR``
    (its former name, MNIST's own folder), each when it names a folder (relative to the repository root),
    then ``../shared/data/mnist``."""
    folders = []
    for variable, subfolder in (("DATA_MIRROR", "mnist"), ("MNIST_MIRROR", "")):
        mirror = os.environ.get(variable, "")
        if mirror and "://" not in mirror.removeprefix("file://"):
            folder = Path(mirror.removeprefix("file://")) / subfolder
            folders.append(folder if folder.is_absolute() else REPO_ROOT / folder)
    return [*folders, SHARED_MNIST]


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST mirror folder; skip where this machine has none, but never in CI."""
    folders = _mnist_folders()
    found = next((folder for folder in folders if folder.is_dir()), None)
    if found is None:
        message = (f"real MNIST files not found at {', '.join(map(str, folders))} (set DATA_MIRROR to a folder "
                   "whose mnist/ holds the four .gz files)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite database with its schema created: migrating a new one costs seconds, a copy does not."""
    from mlflow.tracking import MlflowClient

    database = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{database}").search_experiments()
    return database


@pytest.fixture
def store_copy(tmp_path: Path, empty_store: Path) -> Path:
    """A fresh copy of the migrated store at ``tmp_path/mlflow.db``."""
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    return tmp_path / "mlflow.db"
