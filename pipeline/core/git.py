"""git, called one way: a command in a folder, its output, and one ``GitError`` that says what failed.

The gate reads baselines as committed, a training run records its commit and whether the work tree is dirty, a
failed stage names the committed outputs git can restore, and a tune worker clones and resets its workspace: each
runs git through here, so each gets the same error when git is missing, times out or exits non-zero.
"""

import subprocess
from pathlib import Path

from pipeline.core.errors import PipelineError

SHOWN_OUTPUT_CHARS = 2000
"""The end of git's own error output that a ``GitError`` carries: enough for its reason, not a whole diff."""


class GitError(PipelineError):
    """git could not run (``returncode`` is None: not installed, timed out) or exited non-zero.

    ``stderr`` holds the end of git's own error output, for callers that word their own message.
    """

    def __init__(self, message: str, returncode: int | None = None, stderr: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


def git_bytes(cwd: Path, *args: str, stdin: bytes | None = None, timeout: float | None = None) -> bytes:
    """``git args`` run in ``cwd`` (fed ``stdin``, stopped after ``timeout`` seconds); its standard output.

    Raises ``GitError``: ``cannot run git (reason)`` when it does not start or finish, else naming the command,
    the folder, the exit status and git's error output.
    """
    try:
        done = subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, check=False,
                              timeout=timeout)
    except OSError as error:
        raise GitError(f"cannot run git ({error.strerror or error})") from None
    except subprocess.TimeoutExpired as error:
        raise GitError(f"cannot run git (git {args[0]} took more than {error.timeout:g} s)") from None
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace").strip()[-SHOWN_OUTPUT_CHARS:]
        raise GitError(f"git {' '.join(args)} in {cwd} exited {done.returncode}: {stderr}", done.returncode, stderr)
    return done.stdout


def git(cwd: Path, *args: str, timeout: float | None = None) -> str:
    """``git_bytes`` decoded as UTF-8 (an undecodable byte becomes U+FFFD), line ends as git wrote them."""
    return git_bytes(cwd, *args, timeout=timeout).decode(errors="replace")
