"""`.ci/stale_lock.py`: CI fails when dvc.lock no longer records the committed code, params and commands.

The reported case: a commit after the last `dvc repro` touched a docstring, so every fresh clone's
`dvc status` listed all five stages as changed and the documented `dvc pull`, `dvc repro` reran them.
The check asks DVC's own `dvc status` in a real clone of this repository, whose outputs are not pulled.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from clones import clone_repository
from helpers import REPO_ROOT, git

CHECK = Path(".ci") / "stale_lock.py"
sys.path.insert(0, str(REPO_ROOT / ".ci"))
from stale_lock import stale_changes  # noqa: E402  (a CI script, not a package)


def test_tracked_deps_params_and_commands_count_and_data_not_pulled_does_not() -> None:
    status = {
        "download": [{"changed outs": {"data/raw": "not in cache"}}],
        "prepare": [{"changed deps": {"data/raw": "deleted", "pipeline/prepare.py": "modified"}}],
        "train": [{"changed deps": {"params.yaml": {"train.epochs": "modified"}}}, "changed command"],
        "report": [{"changed deps": {"reports/metrics.json": "modified", "models/vae.keras": "deleted"}}],
    }
    tracked = ["pipeline/prepare.py", "reports/metrics.json", "params.yaml"]
    assert stale_changes(status, tracked) == {
        "prepare": ["pipeline/prepare.py modified"],
        "train": ["param train.epochs modified", "changed command"],
        "report": ["reports/metrics.json modified"],
    }


def _run(clone: Path, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=clone, capture_output=True, text=True, timeout=300, check=False)


def _record_code_in_lock(clone: Path) -> None:
    """What `dvc repro` would record for the code, without the data: DVC hashes each code dep of each stage
    and rewrites that stage's dvc.lock entry (outputs and data deps keep their recorded hashes)."""
    script = """
from dvc.repo import Repo
with Repo(".") as repo:
    for stage in repo.index.stages:
        for dep in stage.deps:
            if dep.def_path.startswith("pipeline/"):
                dep.save()
        stage.dump(update_pipeline=False)
"""
    done = _run(clone, sys.executable, "-c", script)
    assert done.returncode == 0, done.stderr


@pytest.mark.clones  # a clone and four `dvc status` runs
def test_a_clone_whose_docstring_changed_is_stale_for_exactly_the_stages_that_import_it(tmp_path: Path) -> None:
    clone = clone_repository(tmp_path / "clone", with_changes=False)
    _record_code_in_lock(clone)
    git(clone, "commit", "--allow-empty", "-qam", "lock")  # empty when HEAD's lock is fresh
    done = _run(clone, sys.executable, str(CHECK))
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    unpulled = json.loads(_run(clone, sys.executable, "-m", "dvc", "status", "--json").stdout)
    assert unpulled["download"] == [{"changed outs": {"data/raw": "not in cache"}}], "data missing is not stale"

    for module in ("pipeline/data/sources.py", "pipeline/reporting/figures.py"):
        path = clone / module
        path.write_text(path.read_text(encoding="utf-8").replace('"""', '"""Edited. ', 1), encoding="utf-8")
    done = _run(clone, sys.executable, str(CHECK))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "stale dvc.lock: stage download: pipeline/data/sources.py modified; run `dvc repro` and commit dvc.lock",
        "stale dvc.lock: stage report: pipeline/reporting/figures.py modified; run `dvc repro` and commit dvc.lock",
    ], done.stderr

    git(clone, "checkout", "-q", "--", "pipeline")
    (clone / "params.yaml").write_text((clone / "params.yaml").read_text().replace("epochs: 5", "epochs: 6", 1))
    done = _run(clone, sys.executable, str(CHECK))
    assert done.returncode == 1
    assert [line.split(":")[1].strip() for line in done.stderr.splitlines()] == ["stage train", "stage report"]
    assert all("param train modified" in line for line in done.stderr.splitlines()), done.stderr  # whole section
