"""Git clones of this repository that run ``git``, ``dvc`` and the pipeline as a user would, bounded in time.

``dvc`` runs as ``python -m dvc`` from this interpreter, with the venv first on ``PATH`` for the stage commands.
A clone's environment holds a git identity and the MNIST mirror, and none of the DVC, MLflow, Optuna, AWS or
pipeline variables of the shell that runs the tests: each test adds the ones it is about.
"""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from helpers import REPO_ROOT, git

COMMAND_TIMEOUT_S = 1200.0
QUEUE_DEADLINE_S = 900.0
POLL_S = 10.0  # each `dvc exp show` costs ~2 s of CPU on a 2-core runner
GIT_IDENTITY = {  # `dvc exp run --queue` and the clones commit; CI runners have no git user configured
    "GIT_AUTHOR_NAME": "pytest", "GIT_AUTHOR_EMAIL": "pytest@example.invalid",
    "GIT_COMMITTER_NAME": "pytest", "GIT_COMMITTER_EMAIL": "pytest@example.invalid",
}
UNSET_PREFIXES = ("DVC_", "MLFLOW_", "OPTUNA_", "PIPELINE_", "AWS_")
UNSET = ("DATA_MIRROR", "MNIST_MIRROR")
SMALL_PARAMS = {"train.epochs": 1, "evaluate.is_samples": 20, "evaluate.elbo_samples": 2,
                "evaluate.bootstrap_resamples": 10, "classifier.epochs": 1, "report.grid_size": 5}
"""One epoch and cheap evaluate, classifier and report settings: the tests in clones are about DVC, MLflow and
the stack, not the model."""


class CommandError(AssertionError):
    """A command exited non-zero or ran past its time; the message holds its output."""


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = COMMAND_TIMEOUT_S,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in its own session; on timeout kill the whole group (dvc's stage processes too)."""
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=60)
        raise CommandError(
            f"{' '.join(command)} ran past {timeout:.0f} s:\n{stdout[-3000:]}\n{stderr[-3000:]}") from None
    done = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    if check and done.returncode != 0:
        raise CommandError(f"{' '.join(command)} exited {done.returncode}:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    return done


def clone_environment(mnist_dir: Path | None = None, **extra: str) -> dict[str, str]:
    """This environment less the variables a test decides (``UNSET_PREFIXES``, ``UNSET``), with a git identity,
    the venv first on ``PATH``, ``MNIST_MIRROR`` when ``mnist_dir`` is given, and ``extra``."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(UNSET_PREFIXES) and key not in UNSET}
    env |= GIT_IDENTITY | {"PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])}
    if mnist_dir is not None:
        env["MNIST_MIRROR"] = str(mnist_dir)
    return env | extra


def clone_repository(destination: Path, with_changes: bool = True) -> Path:
    """``git clone`` this repository into ``destination``; with its uncommitted changes to tracked files
    applied unless ``with_changes`` is False (the committed state)."""
    git(REPO_ROOT, "clone", "--quiet", str(REPO_ROOT), str(destination))
    if with_changes:
        changes = subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=REPO_ROOT, capture_output=True,
                                 check=True, timeout=600).stdout
        if changes:
            subprocess.run(["git", "apply", "--whitespace=nowarn", "-"], cwd=destination, input=changes, check=True,
                           timeout=600)
    return destination


@dataclass(frozen=True)
class Clone:
    """One working copy of the project and the environment its commands run in."""

    root: Path
    env: dict[str, str]

    def git(self, *args: str) -> str:
        return run(["git", "-c", "commit.gpgsign=false", *args], self.root, self.env).stdout

    def python(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``python ARGS`` in the clone with this interpreter."""
        return run([sys.executable, *args], self.root, self.env, check=check)

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.python("-m", "dvc", *args, check=check)

    def pipeline(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``python -m pipeline ARGS`` in the clone, as a user runs a command by hand."""
        return self.python("-m", "pipeline", *args, check=check)

    def experiments(self) -> dict[str, dict]:
        """``dvc exp show --json`` as {experiment name: its row (``data`` holds metrics) plus ``executor``}."""
        rows = json.loads(self.dvc("exp", "show", "--json").stdout)
        return {
            experiment["name"]: {**experiment["revs"][0], "executor": experiment["executor"]}
            for row in rows for experiment in row.get("experiments") or []
        }

    def wait_for_queue(self, names: tuple[str, ...]) -> dict[str, dict]:
        """Poll until no experiment in ``names`` is queued or running; kill the queue after the deadline."""
        deadline = time.monotonic() + QUEUE_DEADLINE_S
        while True:
            shown = self.experiments()
            states = {name: (shown.get(name, {}).get("executor") or {}).get("state") for name in names}
            if all(state in ("success", "failed") for state in states.values()):
                return shown
            if time.monotonic() > deadline:
                self.dvc("queue", "stop", "--kill", check=False)
                raise CommandError(f"queue not done after {QUEUE_DEADLINE_S:.0f} s: {states}")
            time.sleep(POLL_S)

    def queue_log(self, name: str) -> str:
        """The end of ``dvc queue logs NAME``, for failure messages."""
        done = self.dvc("queue", "logs", name, check=False)
        return (done.stdout + done.stderr)[-4000:]


def metric(shown: dict[str, dict], name: str, key: str) -> float:
    """One test metric of experiment ``name`` as ``dvc exp show`` reports it."""
    return shown[name]["data"]["metrics"]["reports/metrics.json"]["data"][key]


def small_overrides(*params: str) -> list[str]:
    """``dvc exp run`` options: ``-S`` for each of ``params``, then for each of ``SMALL_PARAMS``."""
    settings = [*params, *(f"{key}={value}" for key, value in SMALL_PARAMS.items())]
    return [option for setting in settings for option in ("-S", setting)]
