"""The team stack on localhost: PostgreSQL 15, moto's S3 server and ``mlflow server``, each bounded in time.

Every server runs as ``setpriv --pdeathsig SIG -- timeout -s SIG LIFETIME <server>`` in a session of its
own: ``timeout`` ends the whole process group after ``SERVER_LIFETIME_S`` whatever happens to pytest, the
parent-death signal ends it as soon as pytest dies, and ``Server.stop`` ends it at the end of the session.
PostgreSQL refuses to run as root, so as root it runs as the ``postgres`` account that Debian's package
creates (or ``nobody``) in a temporary folder owned by that account.
"""

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import botocore.exceptions
from helpers import free_port

SERVER_LIFETIME_S = 1800  # the longest any server may live: CI's whole budget
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0
POSTGRES_ROOT = Path("/usr/lib/postgresql")  # Debian and Ubuntu: one <major>/bin per installed server
POSTGRES_ACCOUNTS = ("postgres", "nobody")
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "stack-key", "AWS_SECRET_ACCESS_KEY": "stack-secret",
                  "AWS_DEFAULT_REGION": "us-east-1"}
# credentials and tracking settings: each server and client gets only the ones it needs
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                         "AWS_DEFAULT_REGION", "MLFLOW_S3_ENDPOINT_URL", "MLFLOW_TRACKING_URI")


class ServerError(RuntimeError):
    """A server did not start; the message ends with its log."""


def clean_environment() -> dict[str, str]:
    """This process's environment without credentials or tracking settings: each server gets only its own."""
    return {key: value for key, value in os.environ.items() if key not in CREDENTIAL_VARIABLES}


@dataclass
class Server:
    """One running server: its process (``timeout``, leader of the server's process group) and log."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    stop_signal: signal.Signals
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.is_file() else "(no log)"

    def stop(self) -> None:
        """Ask the group to stop (``timeout`` forwards the signal), then kill what is left; run cleanups."""
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        for step in self.cleanup:
            step()

    def wait_until(self, ready: Callable[[], bool], what: str) -> None:
        """Poll ``ready`` until true. If the server exits, ``START_TIMEOUT_S`` passes or ``ready`` raises,
        stop the server and raise (``ServerError`` with the end of its log)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while not ready():
                if self.process.poll() is not None or time.monotonic() > deadline:
                    state = "timed out" if self.process.returncode is None else f"exited {self.process.returncode}"
                    raise ServerError(f"{self.name} never got {what} ({state}); its log ends:\n{self.log_tail()}")
                time.sleep(0.3)
        except BaseException:
            self.stop()
            raise


def launch(name: str, command: list[str], log: Path, env: dict[str, str], stop_signal: signal.Signals,
           account: str | None = None) -> Server:
    """Start ``command`` bounded in time, in a new session, as ``account`` when given."""
    bounded = ["setpriv", "--pdeathsig", stop_signal.name, *_as_account(account), "--",
               "timeout", "-s", stop_signal.name, str(SERVER_LIFETIME_S), *command]
    with open(log, "wb") as output:
        process = subprocess.Popen(bounded, cwd=log.parent, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    return Server(name, process, log, stop_signal)


def _as_account(account: str | None) -> list[str]:
    """setpriv's options that switch to ``account`` (none for the current user)."""
    if account is None:
        return []
    return ["--reuid", account, "--regid", str(pwd.getpwnam(account).pw_gid), "--init-groups"]


def healthy(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False
    return ready


# --- PostgreSQL ------------------------------------------------------------------------------------


def postgres_bin() -> Path | None:
    """``$POSTGRES_BIN``, else the newest server under ``POSTGRES_ROOT`` (15 on Debian 12), else None."""
    if os.environ.get("POSTGRES_BIN"):
        return Path(os.environ["POSTGRES_BIN"])
    majors = [path.parent.parent.name for path in POSTGRES_ROOT.glob("*/bin/postgres")]
    newest = max((int(major) for major in majors if major.isdigit()), default=None)
    return None if newest is None else POSTGRES_ROOT / str(newest) / "bin"


def postgres_missing() -> str | None:
    """Why PostgreSQL cannot run here, or None."""
    folder = postgres_bin()
    if folder is None or not (folder / "postgres").is_file():
        return (f"PostgreSQL server binaries not found in {folder or POSTGRES_ROOT / '<version>/bin'} "
                "(apt-get install postgresql, or set POSTGRES_BIN)")
    if os.geteuid() == 0 and not any(_account_exists(account) for account in POSTGRES_ACCOUNTS):
        return f"running as root and none of the accounts {POSTGRES_ACCOUNTS} exists to run PostgreSQL"
    return None


def _account_exists(account: str) -> bool:
    try:
        pwd.getpwnam(account)
    except KeyError:
        return False
    return True


def start_postgres(database: str = "mlflow") -> tuple[Server, str]:
    """initdb and start a cluster on a free port; return it and the SQLAlchemy URI of a new ``database``."""
    account = next(name for name in POSTGRES_ACCOUNTS if _account_exists(name)) if os.geteuid() == 0 else None
    binaries = postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="vae-stack-postgres-"))
    password, port, user = secrets.token_hex(16), free_port(), "mlflow"
    (folder / "password").write_text(password)
    if account:
        entry = pwd.getpwnam(account)
        for path in (folder, folder / "password"):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    as_account = ["setpriv", *_as_account(account), "--"] if account else []
    initdb = subprocess.run([*as_account, str(binaries / "initdb"), "-D", str(folder / "data"), "-U", user,
                             f"--pwfile={folder / 'password'}", "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"],
                            cwd=folder, capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False)
    if initdb.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise ServerError(f"initdb exited {initdb.returncode} as {account or 'this user'}:\n{initdb.stderr[-3000:]}")
    command = [str(binaries / "postgres"), "-D", str(folder / "data"), "-h", "127.0.0.1", "-p", str(port),
               "-k", str(folder), "-c", "fsync=off", "-c", "synchronous_commit=off"]
    server = launch("PostgreSQL", command, folder / "postgres.log", clean_environment(), signal.SIGINT, account)
    server.cleanup.append(lambda: shutil.rmtree(folder, ignore_errors=True))
    server.wait_until(lambda: _create_database(port, user, password, database), "ready for connections")
    return server, f"postgresql+psycopg2://{user}:{password}@127.0.0.1:{port}/{database}"


def _create_database(port: int, user: str, password: str, database: str) -> bool:
    import psycopg2

    try:
        connection = psycopg2.connect(host="127.0.0.1", port=port, user=user, password=password, dbname="postgres",
                                      connect_timeout=2)
    except psycopg2.OperationalError:
        return False
    connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{database}"')
    finally:
        connection.close()
    return True


def add_database(uri: str, database: str) -> str:
    """Create ``database`` in the cluster of ``uri`` (a stack URI); return the URI of the new database."""
    from sqlalchemy.engine import make_url

    url = make_url(uri)
    if not _create_database(url.port, url.username, url.password, database):
        raise ServerError(f"PostgreSQL at {url.host}:{url.port} refused a connection")
    return url.set(database=database).render_as_string(hide_password=False)


# --- S3 (moto's server mode) -----------------------------------------------------------------------


def start_s3(folder: Path, buckets: tuple[str, ...]) -> tuple[Server, str]:
    """moto's S3 server on a free port with ``buckets`` created; return it and its endpoint URL."""
    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    server = launch("moto S3 server", command, folder / "moto.log", clean_environment(), signal.SIGTERM)
    endpoint = f"http://127.0.0.1:{port}"
    server.wait_until(lambda: _create_buckets(endpoint, buckets), "its buckets created")
    return server, endpoint


def _create_buckets(endpoint: str, buckets: tuple[str, ...]) -> bool:
    """Create ``buckets``; False while the server does not accept connections yet."""
    client = s3_client(endpoint)
    try:
        for bucket in buckets:
            client.create_bucket(Bucket=bucket)
    except botocore.exceptions.EndpointConnectionError:
        return False
    return True


def s3_client(endpoint: str):  # boto3 generates its client classes at run time: no annotation
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                        region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"])


def object_keys(endpoint: str, bucket: str, prefix: str = "") -> list[str]:
    """Every key under ``prefix`` in ``bucket``."""
    pages = s3_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


# --- MLflow tracking server ------------------------------------------------------------------------


def start_mlflow(folder: Path, backend_uri: str, artifacts: str, s3_endpoint: str) -> tuple[Server, str]:
    """``mlflow server`` on PostgreSQL with proxied S3 artifacts; return it and its tracking URI."""
    port = free_port()
    env = clean_environment() | S3_CREDENTIALS | {
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no job runner processes: a faster start
    }
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
               "--artifacts-destination", artifacts, "--serve-artifacts",
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    server = launch("mlflow server", command, folder / "mlflow.log", env, signal.SIGTERM)
    uri = f"http://127.0.0.1:{port}"
    server.wait_until(healthy(f"{uri}/health"), "healthy")
    return server, uri
