"""The git state a training run records: the commit, and whether the work tree differs from it.

"Dirty" means the commit alone would not reproduce the run's code. Files that DVC itself rewrites
while it reproduces the stages before train (``dvc.lock``, the stages' outputs, the ``.gitignore``
lines it adds for them) do not count, or every run of a fresh clone would be dirty.
"""

import subprocess
from collections.abc import Iterator
from pathlib import Path

from pipeline.core.strict_yaml import YamlError, load_yaml_file

DVC_FILE = "dvc.yaml"
DVC_LOCK = "dvc.lock"
OUTPUT_KINDS = ("outs", "metrics", "plots")


def git_tags(root: Path) -> dict[str, str]:
    """The commit and whether tracked files other than those DVC rewrites changed, as MLflow tags."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    excluded = [f":(exclude,top){DVC_LOCK}", ":(exclude,top,glob)**/.gitignore",
                *(f":(exclude,top){path}" for path in dvc_outputs(root))]
    if not commit:  # not a git checkout, or git is missing: neither tag can be known
        return {"mlflow.source.git.commit": "unknown", "git.dirty": "unknown"}
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ":/", *excluded))
    return {"mlflow.source.git.commit": commit, "git.dirty": str(dirty).lower()}


def dvc_outputs(root: Path) -> list[str]:
    """The paths the stages of ``root/dvc.yaml`` write (outs, metrics, plots), relative to ``root``;
    none when there is no readable dvc.yaml."""
    try:
        pipeline = load_yaml_file(Path(root) / DVC_FILE)
    except (OSError, YamlError):
        return []
    stages = pipeline.get("stages") if isinstance(pipeline, dict) else None
    return sorted(set(_declared(stages))) if isinstance(stages, dict) else []


def _declared(stages: dict) -> Iterator[str]:
    for stage in stages.values():
        for kind in OUTPUT_KINDS:
            entries = stage.get(kind) if isinstance(stage, dict) else None
            for entry in entries if isinstance(entries, list) else []:
                yield from ([entry] if isinstance(entry, str) else entry if isinstance(entry, dict) else [])
