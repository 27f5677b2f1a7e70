"""Where the MLflow store is, and how calls to it fail: the plumbing under ``pipeline.tracking``'s run modules.

The default store is a SQLite file at the project root with artifacts beside it, so ``mlflow ui``
run there shows every run. ``MLFLOW_TRACKING_URI`` points the pipeline at a server instead.
DVC runs queued and ``--temp`` experiments in copies under ``.dvc/tmp/exps/``; the store is
anchored at the real project root so those runs land in the same place.

A store that fails (a damaged or overwritten SQLite file, a full disk, a read-only checkout, a
server error) is one ``TrackingError`` line naming the store, the cause and the way out; MLflow's
own log of the failure (a traceback with the SQL and its parameters) is held back unless verbose.
"""

import functools
import logging
import os
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager, closing, nullcontext
from pathlib import Path
from typing import ParamSpec, TypeVar

import mlflow
import sqlalchemy.exc
from filelock import FileLock

from pipeline.core import interrupts
from pipeline.core.errors import PipelineError
from pipeline.core.paths import MLFLOW_DB_FILE, from_project_root, project_root
from pipeline.core.quiet import verbose

P = ParamSpec("P")
R = TypeVar("R")

SERVER_PROBE_TIMEOUT_S = 5.0
STORE_LOCK_TIMEOUT_S = 120.0
FAILURE_LOGGERS = ("mlflow.store.db.utils",)
"""MLflow's loggers that log a store failure, as a traceback with the SQL and its parameters, before raising it."""
SQLITE_RECOVERY = {
    "SQLITE_CORRUPT": ("is damaged", "restore it from a backup, or set MLFLOW_TRACKING_URI to a new store "
                                     "(sqlite:///{new}); the damaged file is left as it is"),
    "SQLITE_NOTADB": ("is not an SQLite database", "restore it from a backup, or set MLFLOW_TRACKING_URI to a new "
                                                   "store (sqlite:///{new}); the file is left as it is"),
    "SQLITE_FULL": ("cannot grow: the disk is full", "free space on the disk under {folder}, or set "
                                                     "MLFLOW_TRACKING_URI to a store on another disk"),
    "SQLITE_READONLY": ("is read-only", "make {path} and {folder} writable, or set MLFLOW_TRACKING_URI to a "
                                        "writable store"),
    "SQLITE_CANTOPEN": ("cannot be opened", "check that {folder} exists and is writable"),
    "SQLITE_BUSY": ("is locked by another process", "wait for it to finish, then run again"),
    "SQLITE_IOERR": ("cannot be read or written", "check the disk under {folder}, or set MLFLOW_TRACKING_URI to a "
                                                  "store on another disk"),
}
"""What a SQLite failure (by its primary result code) means for the store file, and how to recover."""


class TrackingError(PipelineError):
    """The tracking store cannot be reached or does not hold the expected run."""


def store_errors(function: Callable[P, R]) -> Callable[P, R]:
    """Report an MLflow store failure (damaged file, full disk, read-only, locked database, server error) as
    one ``TrackingError`` line (``store_failure``).

    A Ctrl-C raised inside SQLAlchemy leaves its session half-updated and the database locked, so
    it waits until a local SQLite write is done (milliseconds); calls to a server are not held,
    so a hanging server can still be interrupted.
    """
    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        uri = mlflow.get_tracking_uri()
        try:
            with interrupts.held() if uri.startswith("sqlite:") else nullcontext():
                return function(*args, **kwargs)
        except (mlflow.exceptions.MlflowException, sqlalchemy.exc.SQLAlchemyError, sqlite3.Error) as error:
            raise TrackingError(store_failure(error, uri)) from None
    return wrapper


def store_failure(error: BaseException, uri: str) -> str:
    """One line for a failed store call: the store, the database's own short cause (never the SQL or its
    parameters), and, for a SQLite file, what that cause means and how to recover."""
    cause = _database_error(error)
    text = cause.args[0] if isinstance(cause, sqlite3.Error) and cause.args else getattr(cause, "message", cause)
    first_line = str(text).strip().splitlines()[0] if str(text).strip() else type(cause).__name__
    if not uri.startswith("sqlite:///") or not isinstance(cause, sqlite3.Error):
        return f"MLflow tracking store {uri}: {first_line}"
    return _sqlite_failure(Path(uri.removeprefix("sqlite:///")), cause, first_line)


def _database_error(error: BaseException) -> BaseException:
    """The database driver's error under MLflow's and SQLAlchemy's wrappers, else ``error`` itself."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        if isinstance(current, sqlite3.Error):
            return current
        current = getattr(current, "orig", None) or current.__cause__
    return next((found for found in seen if isinstance(found, sqlalchemy.exc.DBAPIError)), error)


def _sqlite_failure(path: Path, error: sqlite3.Error, cause: str) -> str:
    code = (getattr(error, "sqlite_errorname", "") or "").split("_")[:2]
    known = SQLITE_RECOVERY.get("_".join(code))
    if known is None:
        return f"MLflow tracking store {path}: {cause}"
    meaning, recovery = known
    fill = {"path": path, "folder": path.parent, "new": path.with_name(f"{path.stem}-new{path.suffix}")}
    return f"MLflow tracking store {path} {meaning} ({cause}): {recovery.format(**fill)}"


def check_sqlite_store(uri: str) -> None:
    """Fail with one ``TrackingError`` line where ``uri`` names a SQLite file that is empty, not SQLite, or
    damaged: reading its schema (milliseconds) finds what MLflow would report as chained tracebacks."""
    if not uri.startswith("sqlite:///") or not store_exists(uri):
        return
    path = Path(uri.removeprefix("sqlite:///"))
    if path.stat().st_size == 0:
        raise TrackingError(f"MLflow tracking store {path} is empty (0 bytes): restore it from a backup, or delete "
                            "it to start a new store")
    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as database:
            database.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as error:
        raise TrackingError(store_failure(error, uri)) from None


def hold_failure_logs() -> None:
    """Keep MLflow from logging a store failure that ``store_errors`` reports in one line, unless verbose."""
    if not verbose():
        for name in FAILURE_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)


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
    the copy that DVC deletes, run and all. An existing SQLite store that is empty, not SQLite or damaged
    fails here, in one line, before any stage loads TensorFlow.
    """
    root = root or project_root()
    configured = os.environ.get("MLFLOW_TRACKING_URI")
    uri = anchored_tracking_uri(configured, root) if configured else default_tracking_uri(root)
    hold_failure_logs()
    if uri.startswith(("http://", "https://")):
        _probe_server(uri)
    check_sqlite_store(uri)
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
