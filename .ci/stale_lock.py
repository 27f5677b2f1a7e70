"""Fail when dvc.lock no longer describes the committed code, params and commands: a fresh clone would rerun.

A clone is meant to `dvc pull`, then `dvc repro` and find every stage up to date. That holds only while
dvc.lock records the tree's own code and params, so a commit that edits a module without rerunning the
stages that import it makes every later clone stale. This asks DVC itself (`dvc status --json`) and keeps
what a clone has in git: changed deps that git tracks (code, the committed metrics), changed params and
changed commands. Data and models that the clone has not pulled show as deleted there and are not counted.

CI runs it before the tests, on the commit as pushed (`.ci/run`); a developer's work tree is stale by
design between an edit and the next `dvc repro`, so this is no test of the quick tier.
Prints one line per stale stage and exits 1, or exits 0 silently.
"""

import json
import subprocess
import sys
from collections.abc import Iterable, Mapping

SHOWN = 5
"""Changes named per stage; a stage that depends on 28 modules says how many more there are."""


def stale_changes(status: Mapping[str, list], tracked: Iterable[str]) -> dict[str, list[str]]:
    """What differs from dvc.lock per stage, from ``dvc status --json``: tracked deps, params, commands."""
    tracked = set(tracked)
    stale: dict[str, list[str]] = {}
    for stage, entries in status.items():
        changes = []
        for entry in entries:
            if isinstance(entry, str):  # "changed command", "always changed"
                changes.append(entry)
                continue
            for path, change in entry.get("changed deps", {}).items():
                if isinstance(change, dict):  # a params file: {key: change}
                    changes += [f"param {key} {what}" for key, what in sorted(change.items())]
                elif path in tracked:
                    changes.append(f"{path} {change}")
        if changes:
            stale[stage] = changes
    return stale


def main() -> int:
    """Print one line per stage whose committed dependencies differ from dvc.lock; return 1 if any does."""
    dvc_status = [sys.executable, "-m", "dvc", "status", "--json"]
    status = json.loads(subprocess.run(dvc_status, check=True, capture_output=True, text=True).stdout or "{}")
    tracked = subprocess.run(["git", "ls-files", "-z"], check=True, capture_output=True, text=True).stdout.split("\0")
    stale = stale_changes(status, tracked)
    for stage, changes in stale.items():
        shown = ", ".join(changes[:SHOWN]) + (f" and {len(changes) - SHOWN} more" if len(changes) > SHOWN else "")
        print(f"stale dvc.lock: stage {stage}: {shown}; run `dvc repro` and commit dvc.lock", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
