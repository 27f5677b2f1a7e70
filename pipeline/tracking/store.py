"""Where the MLflow store is, and how calls to it fail: the plumbing under ``pipeline.tracking.runs``.

The default store is a SQLite file at the project root with artifacts beside it, so ``mlflow ui``
run there shows every run. ``MLFLOW_TRACKING_URI`` points the pipeline at a server instead.
DVC runs queued and ``--temp`` experiments in copies under ``.dvc/tmp/exps/``; the store is
anchored at the real project root so those runs land in the same place.
"""

import functools
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import ParamSpec, TypeVar

import mlflow
from filelock import FileLock

from pipeline.core import interrupts
from pipeline.core.errors import PipelineError
from pipeline.core.paths import MLFLOW_DB_FILE, from_project_root, project_root

P = ParamSpec("P")
R = TypeVar("R")

SERVER_PROBE_TIMEOUT_S = 5.0
STORE_LOCK_TIMEOUT_S = 120.0


class TrackingError(PipelineError):
    """The tracking store cannot be reached or does not hold the expected run."""


def store_errors(function: Callable[P, R]) -> Callable[P, R]:
    """Report an MLflow store failure (locked database, server error) as one ``TrackingError`` line.

    A Ctrl-C raised inside SQLAlchemy leaves its session half-updated and the database locked, so
    it waits until a local SQLite write is done (milliseconds); calls to a server are not held,
    so a hanging server can still be interrupted.
    """
    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        local = mlflow.get_tracking_uri().startswith("sqlite:")
        try:
            with interrupts.held() if local else nullcontext():
                return function(*args, **kwargs)
        except mlflow.exceptions.MlflowException as error:
            raise TrackingError(f"MLflow tracking store {mlflow.get_tracking_uri()}: {error.message}") from None
    return wrapper


def store_exists(uri: str) -> bool:
    """Whether the SQLite file of ``uri`` exists (a server counts as existing): readers must not create
    an empty store where none was written."""
    return not uri.startswith("sqlite:///") or Path(uri.removeprefix("sqlite:///")).is_file()


def require_store(uri: str) -> None:
    """Fail with one line where ``uri`` names a SQLite file that does not exist."""
    if not store_exists(uri):
        raise TrackingError(f"no MLflow tracking store at {uri}; run the train stage first")


def default_tracking_uri(root: Path) -> str:
    """The embedded store: ``sqlite:////abs/path/mlflow.db``."""
    return f"sqlite:///{root / MLFLOW_DB_FILE}"


def configure(root: Path | None = None) -> str:
    """Point MLflow at ``MLFLOW_TRACKING_URI`` or the embedded store; fail fast if a server is down.

    A relative store path in ``MLFLOW_TRACKING_URI`` is taken against the project root, as the default
    store's is: ``sqlite:///mlflow.db`` inside a DVC temporary experiment would otherwise be a store in
    the copy that DVC deletes, run and all.
    """
    root = root or project_root()
    configured = os.environ.get("MLFLOW_TRACKING_URI")
    uri = anchored_tracking_uri(configured, root) if configured else default_tracking_uri(root)
    if uri.startswith(("http://", "https://")):
        _probe_server(uri)
    mlflow.set_tracking_uri(uri)
    return uri


def anchored_tracking_uri(uri: str, root: Path) -> str:
    """``uri`` with a relative SQLite file, ``file:`` path or bare store path made absolute under ``root``.

    ``sqlite:///mlflow.db`` names a relative file (``sqlite:////abs/mlflow.db`` an absolute one), as
    in SQLAlchemy; in-memory SQLite, servers, ``databricks`` and absolute paths are kept as they are.
    """
    scheme, separator, rest = uri.partition(":")
    if not separator and uri != "databricks":  # a bare path: MLflow's file store
        return str(from_project_root(uri, root))
    if scheme == "sqlite" and rest.startswith("///") and rest[3:] not in ("", ":memory:"):
        return f"sqlite:///{from_project_root(rest[3:], root)}"
    if scheme == "file" and not rest.startswith("//"):
        return from_project_root(urllib.request.url2pathname(rest), root).as_uri()
    return uri


def _probe_server(uri: str) -> None:
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=SERVER_PROBE_TIMEOUT_S):
            pass
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise TrackingError(f"MLflow tracking server {uri} is unreachable ({reason}); "
                            "start it or unset MLFLOW_TRACKING_URI") from None


def first_use_lock(uri: str) -> AbstractContextManager[object]:
    """Serialise first use of a SQLite store: MLflow's table creation and experiment creation race
    when ``dvc queue start -j 2`` starts two trainings on a fresh store."""
    if not uri.startswith("sqlite:///"):
        return nullcontext()
    return FileLock(uri.removeprefix("sqlite:///") + ".lock", timeout=STORE_LOCK_TIMEOUT_S)
