"""The outputs dvc.yaml declares, and how to bring a stage's back after DVC ran it and it failed.

DVC deletes a stage's outputs before it runs the stage (unless they are ``persist: true``) and does
not put them back when the stage fails: DVC's maintainers keep it so on purpose (treeverse/dvc#1800).
So a ``dvc exp run -S train.epochs=-1`` that the params check refuses leaves ``models/`` empty and the
git-tracked ``reports/train_history.csv`` deleted. Nothing runs between DVC's deletion and the stage's
own check, so the stage that fails under DVC says the one command that restores what it lost: git
restores the committed files, ``dvc checkout`` the cached ones, both as ``dvc.lock`` and ``HEAD`` record them.
"""

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.git import GitError, git
from pipeline.core.paths import TEMPORARY_EXPERIMENT_DIR
from pipeline.core.strict_yaml import YamlError, load_yaml_file

DVC_FILE = "dvc.yaml"
DVC_LOCK = "dvc.lock"
STAGE_ENV = "DVC_STAGE"
"""Set by DVC (3.x) to the name of the stage it runs."""
OUTPUT_KINDS = ("outs", "metrics", "plots")


@dataclass(frozen=True)
class Output:
    """One path a stage writes, as dvc.yaml declares it."""

    path: str
    cached: bool = True
    persist: bool = False


def declared_outputs(root: Path, stage: str | None = None) -> list[Output]:
    """The outputs (outs, metrics, plots) of ``stage``, or of every stage, in ``root/dvc.yaml``; none when
    there is no readable dvc.yaml."""
    try:
        pipeline = load_yaml_file(Path(root) / DVC_FILE)
    except (OSError, YamlError):
        return []
    stages = pipeline.get("stages") if isinstance(pipeline, dict) else None
    if not isinstance(stages, dict):
        return []
    chosen = [stages.get(stage)] if stage is not None else list(stages.values())
    return [output for entry in chosen if isinstance(entry, dict) for output in _outputs(entry)]


def _outputs(stage: dict[str, Any]) -> Iterator[Output]:
    for kind in OUTPUT_KINDS:
        entries = stage.get(kind)
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, str):
                yield Output(entry)
            elif isinstance(entry, dict):
                for path, options in entry.items():
                    options = options if isinstance(options, dict) else {}
                    yield Output(path, options.get("cache", True) is not False, options.get("persist") is True)


def restore_hint(stage: str, root: Path, environ: Mapping[str, str] = os.environ) -> str:
    """Where DVC ran ``stage`` (``DVC_STAGE``) in the workspace ``root``, what it deleted and the command that
    brings it back; else ``""``."""
    if environ.get(STAGE_ENV) != stage or TEMPORARY_EXPERIMENT_DIR in str(root):
        return ""  # not run by DVC, or in a temporary copy that DVC deletes, the workspace untouched
    if stage not in _locked_stages(root):
        return ""  # no run of it was ever recorded: nothing to restore
    removed = [output for output in declared_outputs(root, stage) if not output.persist]
    committed = _tracked_by_git(root, [output.path for output in removed if not output.cached])
    commands = ([f"git checkout HEAD -- {' '.join(committed)}"] if committed else []) + (
        [f"dvc checkout {stage}"] if any(output.cached for output in removed) else [])
    if not commands:
        return ""
    return (f"DVC deleted this stage's outputs before running it and does not put them back; to restore the "
            f"last committed ones: {' && '.join(commands)}")


def _locked_stages(root: Path) -> set[str]:
    """The stages ``root/dvc.lock`` records a run of."""
    try:
        lock = load_yaml_file(Path(root) / DVC_LOCK)
    except (OSError, YamlError):
        return set()
    stages = lock.get("stages") if isinstance(lock, dict) else None
    return set(stages) if isinstance(stages, dict) else set()


def _tracked_by_git(root: Path, paths: list[str]) -> list[str]:
    if not paths:
        return []
    try:
        listed = git(root, "ls-files", "-z", "--", *paths, timeout=30)
    except GitError:
        return []
    tracked = set(listed.split("\0"))
    return [path for path in paths if path in tracked]
