"""What a team does with the stack: one member builds and pushes, another pulls, experiments are queued.

The first member clones the project (with the working tree's uncommitted changes), adds the S3 remote,
runs ``dvc repro`` against the tracking server, pushes git to a local bare ``origin`` and the data to the
remote, then queues experiments. A second member clones ``origin`` and pulls.
"""

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import servers
import yaml
from clones import SMALL_PARAMS, Clone, clone_environment, clone_repository

DVC_BUCKET, DVC_PREFIX = "team-dvc", "vae"
MLFLOW_BUCKET, MLFLOW_PREFIX = "team-mlflow", "mlflow"
REMOTE = "team"
# The bad one comes first so it fails while the other worker trains.
QUEUED = {"stack-bad": "train.optimizer=nadam", "stack-beta": "train.beta=0.5", "stack-seed": "train.seed=7"}
WORKERS = 2
FINDINGS: dict[str, str] = {}  # what the stack tests saw, printed at the end of the session


def record(what: str, value: object) -> None:
    """Keep ``value`` for the session summary (``pytest_terminal_summary`` in conftest)."""
    FINDINGS[what] = str(value).strip()


@dataclass(frozen=True)
class Stack:
    """Where each service listens."""

    postgres_uri: str
    s3_endpoint: str
    tracking_uri: str


@dataclass(frozen=True)
class Built:
    """The first member's clone after ``dvc repro`` and ``dvc push``, with what DVC printed."""

    clone: Clone
    origin: Path
    repro: subprocess.CompletedProcess[str]
    push: subprocess.CompletedProcess[str]
    repro_s: float


@dataclass(frozen=True)
class Pulled:
    """The second member's clone after ``dvc pull``, ``dvc repro`` and ``dvc status``."""

    clone: Clone
    pull: subprocess.CompletedProcess[str]
    repro: subprocess.CompletedProcess[str]
    status: subprocess.CompletedProcess[str]


@dataclass(frozen=True)
class Queued:
    """The experiments of ``QUEUED`` once ``dvc queue start -j WORKERS`` is done with them."""

    shown: dict[str, dict]
    status: str
    start: subprocess.CompletedProcess[str]
    wall_s: float


def member_environment(tracking_uri: str, mnist_dir: Path) -> dict[str, str]:
    """What a team member's shell holds: the tracking server, the data mirror, a git identity; no AWS variables,
    so DVC reads its S3 credentials from ``.dvc/config.local`` and MLflow reaches the bucket only through the
    tracking server."""
    return clone_environment(mnist_dir, MLFLOW_TRACKING_URI=tracking_uri)


def set_credentials(clone: Clone) -> None:
    """The remote's credentials in ``.dvc/config.local``, which DVC's own .gitignore keeps out of git."""
    for option, variable in (("access_key_id", "AWS_ACCESS_KEY_ID"), ("secret_access_key", "AWS_SECRET_ACCESS_KEY")):
        clone.dvc("remote", "modify", "--local", REMOTE, option, servers.S3_CREDENTIALS[variable])


def use_small_params(clone: Clone) -> None:
    """Rewrite the clone's params.yaml with ``SMALL_PARAMS`` (comments are lost: this is a throw-away clone)."""
    path = clone.root / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    for dotted, value in SMALL_PARAMS.items():
        section, key = dotted.split(".")
        params[section][key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def build(stack: Stack, env: dict[str, str], base: Path) -> Built:
    """Clone, add the remote (endpoint committed, credentials local), repro, push git and data."""
    clone = Clone(clone_repository(base / "first"), env)
    use_small_params(clone)
    clone.dvc("remote", "add", "--default", REMOTE, f"s3://{DVC_BUCKET}/{DVC_PREFIX}")
    clone.dvc("remote", "modify", REMOTE, "endpointurl", stack.s3_endpoint)
    set_credentials(clone)
    clone.git("add", "--all")
    clone.git("commit", "--quiet", "-m", f"Team remote; small params {SMALL_PARAMS}")

    origin = base / "origin.git"
    clone.git("clone", "--quiet", "--bare", str(clone.root), str(origin))
    clone.git("remote", "set-url", "origin", str(origin))
    clone.git("fetch", "--quiet", "origin")

    started = time.monotonic()
    repro = clone.dvc("repro")
    repro_s = time.monotonic() - started
    clone.git("add", "--all")
    clone.git("commit", "--quiet", "-m", "Pipeline built against the team stack")
    clone.git("push", "--quiet", "origin", "HEAD")
    push = clone.dvc("push")
    record("first clone: dvc repro (1 epoch) wall s", f"{repro_s:.1f}")
    record("first clone: dvc push", push.stdout)
    return Built(clone, origin, repro, push, repro_s)


def pull_second(built: Built, base: Path) -> Pulled:
    """A fresh clone of ``origin`` that pulls the data and models, then reproduces."""
    clone = Clone(base / "second", built.clone.env)
    built.clone.git("clone", "--quiet", str(built.origin), str(clone.root))
    set_credentials(clone)
    pull = clone.dvc("pull")
    pulled = Pulled(clone, pull, clone.dvc("repro"), clone.dvc("status"))
    record("second clone: dvc pull (last line)", pull.stdout.strip().splitlines()[-1])
    record("second clone: dvc repro after pull", pulled.repro.stdout)
    return pulled


def run_queue(clone: Clone) -> Queued:
    """Queue ``QUEUED`` and run them with ``WORKERS`` parallel workers until each succeeded or failed."""
    for name, param in QUEUED.items():
        clone.dvc("exp", "run", "--queue", "-n", name, "-S", param)
    started = time.monotonic()
    start = clone.dvc("queue", "start", "-j", str(WORKERS))
    shown = clone.wait_for_queue(tuple(QUEUED))
    queued = Queued(shown, clone.dvc("queue", "status").stdout, start, time.monotonic() - started)
    record(f"queue of {len(QUEUED)} with -j {WORKERS}: wall s until all done", f"{queued.wall_s:.1f}")
    record("dvc queue status", queued.status)
    return queued
