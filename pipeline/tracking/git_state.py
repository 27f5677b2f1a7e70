"""The git state a training run records: the commit, and whether the work tree differs from it.

"Dirty" means the commit alone would not reproduce the run's code. Files that DVC itself rewrites
while it reproduces the stages before train (``dvc.lock``, the stages' outputs, the ``.gitignore``
lines it adds for them) do not count, or every run of a fresh clone would be dirty.
"""

from pathlib import Path

from pipeline.core.dvc_outputs import DVC_LOCK, declared_outputs
from pipeline.core.git import GitError, git


def git_tags(root: Path) -> dict[str, str]:
    """The commit and whether tracked files other than those DVC rewrites changed, as MLflow tags."""
    commit = _output(root, "rev-parse", "HEAD")
    excluded = [f":(exclude,top){DVC_LOCK}", ":(exclude,top,glob)**/.gitignore",
                *(f":(exclude,top){path}" for path in dvc_outputs(root))]
    if not commit:  # not a git checkout, or git is missing: neither tag can be known
        return {"mlflow.source.git.commit": "unknown", "git.dirty": "unknown"}
    dirty = bool(_output(root, "status", "--porcelain", "--untracked-files=no", "--", ":/", *excluded))
    return {"mlflow.source.git.commit": commit, "git.dirty": str(dirty).lower()}


def dvc_outputs(root: Path) -> list[str]:
    """The paths the stages of ``root/dvc.yaml`` write (outs, metrics, plots), relative to ``root``;
    none when there is no readable dvc.yaml."""
    return sorted({output.path for output in declared_outputs(root)})


def _output(root: Path, *args: str) -> str:
    """git's output, stripped; empty where git fails or is missing (the tags then say ``unknown``)."""
    try:
        return git(root, *args).strip()
    except GitError:
        return ""
