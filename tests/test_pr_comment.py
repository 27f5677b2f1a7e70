"""CI's comment script edits its own earlier report comment instead of adding one on each push.

``gh`` is replaced by a stand-in that serves canned GitHub API answers and applies the script's ``--jq``
filter with the real ``jq`` (gh's filter language is jq's); every call it receives is recorded.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import REPO_ROOT

from pipeline.gate.summary import MARKER

SCRIPT = REPO_ROOT / ".github" / "scripts" / "pr-comment.sh"
FAKE_GH = """#!/usr/bin/env bash
echo "$*" >> "$CALLS"
if [[ "$*" == *"--method"* ]]; then exit 0; fi
filter=""
while (($#)); do if [[ "$1" == "--jq" ]]; then filter=$2; shift; fi; shift; done
jq -r "$filter" "$COMMENTS"
"""

pytestmark = pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")


def run_script(tmp_path: Path, comments: list[dict[str, object]]) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gh").write_text(FAKE_GH)
    (bin_dir / "gh").chmod(0o755)
    (tmp_path / "comments.json").write_text(json.dumps(comments))
    report = tmp_path / "report.md"
    report.write_text(f"{MARKER}\n## ✅ Gate passed\n")
    calls = tmp_path / "calls.log"
    environment = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls),
                   "COMMENTS": str(tmp_path / "comments.json"), "GITHUB_REPOSITORY": "team/vae", "PR_NUMBER": "12"}
    subprocess.run(["bash", str(SCRIPT), str(report)], env=environment, check=True, capture_output=True, timeout=600)
    return calls.read_text().splitlines()


def comment(number: int, body: str, login: str = "github-actions[bot]") -> dict[str, object]:
    return {"id": number, "body": body, "user": {"login": login}}


def test_the_first_push_creates_the_comment(tmp_path: Path) -> None:
    calls = run_script(tmp_path, [comment(1, "LGTM", "reviewer")])
    assert calls[-1].startswith("api --method POST repos/team/vae/issues/12/comments -F body=@")


def test_a_later_push_edits_the_workflows_own_comment(tmp_path: Path) -> None:
    calls = run_script(tmp_path, [comment(1, "LGTM", "reviewer"), comment(7, f"{MARKER}\nold report"),
                                  comment(9, "another bot note")])
    assert calls[-1].startswith("api --method PATCH repos/team/vae/issues/comments/7 -F body=@")
    assert not any("POST" in call for call in calls)


def test_a_person_quoting_the_marker_is_never_edited(tmp_path: Path) -> None:
    calls = run_script(tmp_path, [comment(3, f"{MARKER}\nquoted by hand", "reviewer")])
    assert "POST" in calls[-1]


def test_a_file_without_the_marker_is_refused(tmp_path: Path) -> None:
    report = tmp_path / "plain.md"
    report.write_text("## report\n")
    done = subprocess.run(["bash", str(SCRIPT), str(report)], capture_output=True, text=True,
                          env={**os.environ, "GITHUB_REPOSITORY": "team/vae", "PR_NUMBER": "1"}, timeout=600)
    assert done.returncode == 1 and "hidden marker" in done.stderr
