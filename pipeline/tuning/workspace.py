"""A worker's own workspace: a clone of the user's repository in which ``dvc exp run`` runs one trial at a time.

DVC allows one process per workspace, so each worker gets ``.tune/workspaces/w<N>`` (git- and DVC-ignored),
a ``git clone --shared`` of the repository at its HEAD with the uncommitted changes to tracked files applied,
using the repository's DVC cache. Its ``origin`` is the user's repository: each trial's experiment is pushed
there (outputs need no copy: the cache is shared), and on to the repository's own git remote and DVC remote
when both are configured, as ``dvc exp push`` does by hand.
"""

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from pipeline.core.errors import PipelineError
from pipeline.core.git import GitError, git, git_bytes
from pipeline.core.paths import RUN_FILE, TRAIN_HISTORY_FILE

TUNE_DIR = Path(".tune")
JOURNAL_FILE = TUNE_DIR / "journal.log"
"""The one-machine study storage: Optuna's journal file, in the repository and git-ignored."""
WORKSPACES_DIR = TUNE_DIR / "workspaces"
TEAM_REMOTE = "team"
"""The workspace's name for the user repository's own git remote (``origin`` is the user repository)."""
LEAKING_VARIABLES = ("DVC_ROOT", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "DVC_STAGE")
TARGET = "train"
"""The stage a trial runs up to: the objective is the train stage's validation -ELBO."""


class WorkspaceError(PipelineError):
    """A git or DVC command in a worker's workspace failed; the message ends with its output."""


@dataclass
class Workspace:
    """``path``, a clone of the repository at ``root``; ``changes`` are the root's uncommitted ones."""

    root: Path
    path: Path
    changes: bytes = b""

    def dvc(self, *args: str, env: Mapping[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``dvc args`` in the workspace (as this interpreter's module); WorkspaceError on failure."""
        argv = [sys.executable, "-m", "dvc", *args]
        done = subprocess.run(argv, cwd=self.path, env=dict(env or tool_environment()), capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, check=False)
        if check and done.returncode != 0:
            output = (done.stdout + done.stderr).strip()[-2000:]
            raise WorkspaceError(f"dvc {' '.join(args)} in {self.path} exited {done.returncode}:\n{output}")
        return done

    def sync(self) -> None:
        """Make the workspace the repository's HEAD plus its uncommitted changes to tracked files."""
        if not (self.path / ".git").is_dir():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            git(self.root, "clone", "--quiet", "--shared", "--no-checkout", ".", str(self.path))
        head = git(self.root, "rev-parse", "HEAD").strip()
        git(self.path, "fetch", "--quiet", "origin", head)
        git(self.path, "checkout", "--quiet", "--force", "--detach", head)
        git(self.path, "clean", "--quiet", "-d", "--force")  # ignored files (data, models) stay: DVC reuses them
        self.changes = git_bytes(self.root, "diff", "HEAD", "--binary")
        self.reset()
        local_config = self.root / ".dvc" / "config.local"  # the DVC remote's credentials, never committed
        if local_config.is_file():
            (self.path / ".dvc" / "config.local").write_bytes(local_config.read_bytes())
        cache = Workspace(self.root, self.root).dvc("cache", "dir").stdout.strip()
        self.dvc("config", "--local", "cache.dir", cache or str(self.root / ".dvc" / "cache"))
        team = _remote_url(self.root, "origin")
        if _remote_url(self.path, TEAM_REMOTE):
            git(self.path, "remote", "remove", TEAM_REMOTE)
        if team:
            git(self.path, "remote", "add", TEAM_REMOTE, team)

    def commit(self) -> str:
        """The commit the workspace's trials start from (the repository's HEAD when the worker started)."""
        return git(self.path, "rev-parse", "HEAD").strip()

    def reset(self) -> None:
        """Tracked files as at HEAD with the root's uncommitted changes, whatever the last trial left."""
        git(self.path, "checkout", "--quiet", "--force", "HEAD", "--", ".")
        if self.changes:
            try:
                git_bytes(self.path, "apply", "--whitespace=nowarn", "-", stdin=self.changes)
            except GitError as error:
                raise WorkspaceError(f"the uncommitted changes of {self.root} do not apply in {self.path}: "
                                     f"{error.stderr or error}") from None

    def experiment(self, name: str, assignments: Mapping[str, str], env: Mapping[str, str]) -> bool:
        """``dvc exp run train -n NAME -S key=value ...`` from a clean HEAD; True when it succeeded."""
        self.reset()
        options = [part for key, value in assignments.items() for part in ("-S", f"{key}={value}")]
        argv = [sys.executable, "-m", "dvc", "exp", "run", TARGET, "-n", name, *options]
        with open(self.log, "a", encoding="utf-8") as output:
            output.write(f"\n$ dvc exp run {TARGET} -n {name} {' '.join(options)}\n")
            output.flush()
            process = subprocess.Popen(argv, cwd=self.path, env=dict(env), stdout=output, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
            try:
                return process.wait() == 0
            except BaseException:  # Ctrl-C reached the whole process group: let DVC and the stage close first
                try:
                    process.wait(timeout=STOP_WAIT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                raise

    def last_error(self) -> str:
        """The cause of the last failed trial: the stage's error line, else the end of DVC's output."""
        lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        trial = lines[max(index for index, line in enumerate(lines) if line.startswith("$ dvc exp run")) + 1:]
        errors = [line for line in trial if ": error: " in line or line.startswith("ERROR:")]
        return (errors or trial or ["no output"])[0].strip()

    @property
    def log(self) -> Path:
        """What DVC and the stages printed, trial after trial: ``.tune/workspaces/w<N>.log``."""
        return self.path.parent / f"{self.path.name}.log"

    def save_params_only(self, name: str) -> None:
        """Record the failed run's params as experiment ``name``, committing only the stages that finished
        before train (so DVC claims no model for them; ``dvc exp apply`` then ``dvc repro`` trains it)."""
        self.dvc("exp", "save", "--force", "-n", name, "prepare")

    def objective(self) -> float:
        """The validation -ELBO after the last epoch, from the history the train stage wrote."""
        rows = (self.path / TRAIN_HISTORY_FILE).read_text(encoding="utf-8").splitlines()
        header, last = rows[0].split(","), rows[-1].split(",")
        return float(last[header.index("val_neg_elbo")])

    def run_id(self) -> str:
        """The MLflow run that trained the workspace's model (``models/run.json``)."""
        return json.loads((self.path / RUN_FILE).read_text(encoding="utf-8"))["run_id"]

    def publish(self, name: str) -> None:
        """Push experiment ``name`` to the user's repository, then to its git and DVC remotes if it has both."""
        self.dvc("exp", "push", "--no-cache", "origin", name)
        has_dvc_remote = self.dvc("remote", "default", check=False).stdout.strip()
        if has_dvc_remote and _remote_url(self.path, TEAM_REMOTE):
            self.dvc("exp", "push", TEAM_REMOTE, name)


STOP_WAIT_S = 60.0
"""How long a stopping worker waits for DVC and the train stage to close their run before killing them."""


def tool_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment for git and DVC, without the variables of a DVC stage that ran us, with this
    interpreter's folder first on PATH (the stages run ``python -m pipeline.<stage>``)."""
    env = {key: value for key, value in os.environ.items() if key not in LEAKING_VARIABLES}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env | dict(extra or {})


def _remote_url(repository: Path, remote: str) -> str:
    """The URL of git remote ``remote`` of ``repository``; empty when there is no such remote."""
    try:
        return git(repository, "remote", "get-url", remote).strip()
    except GitError:
        return ""


@contextmanager
def acquired(root: Path, preferred: int | None = None) -> Iterator[Workspace]:
    """The first workspace no other worker holds (``w<preferred>`` first), locked until the block ends."""
    order = ([preferred] if preferred is not None else []) + [index for index in range(1000) if index != preferred]
    for index in order:
        path = root / WORKSPACES_DIR / f"w{index}"
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path) + ".lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue
        try:
            yield Workspace(root, path)
        finally:
            lock.release()
        return
    raise WorkspaceError(f"every workspace under {root / WORKSPACES_DIR} is held by another worker")
