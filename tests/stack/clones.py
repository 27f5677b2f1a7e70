"""Git clones of the repository that run ``git`` and ``dvc`` as a team member would, bounded in time.

``dvc`` runs as ``python -m dvc`` from this interpreter, with the venv first on ``PATH`` for the stage
commands. A clone's environment holds the tracking server's URI and the MNIST mirror, and no AWS
variables: DVC reads its S3 credentials from ``.dvc/config.local`` and MLflow clients reach the
bucket only through the tracking server.
"""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from servers import clean_environment

COMMAND_TIMEOUT_S = 900.0
QUEUE_DEADLINE_S = 900.0
POLL_S = 10.0  # each `dvc exp show` costs ~2 s of CPU on a 2-core runner
GIT_IDENTITY = {  # `dvc exp run --queue` and the clones commit; CI runners have no git user configured
    "GIT_AUTHOR_NAME": "pytest", "GIT_AUTHOR_EMAIL": "pytest@example.invalid",
    "GIT_COMMITTER_NAME": "pytest", "GIT_COMMITTER_EMAIL": "pytest@example.invalid",
}
DVC_VARIABLES = ("DVC_ROOT", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "MLFLOW_EXPERIMENT_NAME")
# One epoch and cheap evaluate/report settings: the stack is under test, not the model.
SMALL_PARAMS = {("train", "epochs"): 1, ("evaluate", "is_samples"): 20, ("evaluate", "elbo_samples"): 2,
                ("evaluate", "bootstrap_resamples"): 10, ("classifier", "epochs"): 1, ("report", "grid_size"): 5}


class CommandError(AssertionError):
    """A git or dvc command exited non-zero or ran past its time; the message holds its output."""


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = COMMAND_TIMEOUT_S,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in its own session; on timeout kill the whole group (dvc's stage processes too)."""
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        raise CommandError(
            f"{' '.join(command)} ran past {timeout:.0f} s:\n{stdout[-3000:]}\n{stderr[-3000:]}") from None
    done = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    if check and done.returncode != 0:
        raise CommandError(f"{' '.join(command)} exited {done.returncode}:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    return done


def client_environment(tracking_uri: str, mnist_dir: Path) -> dict[str, str]:
    """What a team member's shell holds: the tracking server, the data mirror, a git identity."""
    env = {key: value for key, value in clean_environment().items() if key not in DVC_VARIABLES}
    return env | GIT_IDENTITY | {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MNIST_MIRROR": str(mnist_dir),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    }


@dataclass(frozen=True)
class Clone:
    """One working copy of the project."""

    root: Path
    env: dict[str, str]

    def git(self, *args: str) -> str:
        return run(["git", "-c", "commit.gpgsign=false", *args], self.root, self.env).stdout

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([sys.executable, "-m", "dvc", *args], self.root, self.env, check=check)

    def pipeline(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``python -m pipeline ARGS`` in the clone, as a user runs a command by hand."""
        return run([sys.executable, "-m", "pipeline", *args], self.root, self.env)

    def set_credentials(self, remote: str, key_id: str, secret: str) -> None:
        """Credentials in ``.dvc/config.local``, which DVC's own .gitignore keeps out of git."""
        self.dvc("remote", "modify", "--local", remote, "access_key_id", key_id)
        self.dvc("remote", "modify", "--local", remote, "secret_access_key", secret)

    def use_small_params(self) -> None:
        """Rewrite params.yaml with ``SMALL_PARAMS`` (comments are lost: this is a throw-away clone)."""
        path = self.root / "params.yaml"
        params = yaml.safe_load(path.read_text(encoding="utf-8"))
        for (section, key), value in SMALL_PARAMS.items():
            params[section][key] = value
        path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")

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


def metric(shown: dict[str, dict], name: str, key: str) -> float:
    """One test metric of experiment ``name`` as ``dvc exp show`` reports it."""
    return shown[name]["data"]["metrics"]["reports/metrics.json"]["data"][key]
