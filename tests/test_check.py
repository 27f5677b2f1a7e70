"""The regression gate: verdicts under tolerances, the git baseline, the table, and one-line errors."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.check import main
from pipeline.core.params import Tolerance
from pipeline.gate.comparison import Row, compare_metrics, format_table, verdict

LOWER = Tolerance(higher_is_better=False, tolerance=1.0)
HIGHER = Tolerance(higher_is_better=True, tolerance=0.0)
TOLERANCES = {"test_neg_elbo": LOWER, "active_units": HIGHER}
BASELINE = {"test_neg_elbo": 150.0, "active_units": 2, "test_mse": 0.05}
PARAMS_YAML = """\
check:
  tolerances:
    test_neg_elbo: {higher_is_better: false, tolerance: 1.0}
    active_units: {higher_is_better: true, tolerance: 0}
"""


def verdicts(new: dict[str, float], baseline: dict[str, float] = BASELINE) -> dict[str, str]:
    return {row.metric: row.verdict for row in compare_metrics(baseline, new, TOLERANCES)}


def write_json(path: Path, metrics: dict[str, float]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics))
    return path


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=ci", "-c", "user.email=ci@example.com", *args],
                   cwd=repo, check=True, capture_output=True)


@pytest.fixture
def params(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS_YAML)
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository whose two commits hold test_neg_elbo 100 and then 105."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    for value in (100.0, 105.0):
        write_json(root / "reports" / "metrics.json", {"test_neg_elbo": value, "active_units": 2})
        git(root, "add", "reports/metrics.json")
        git(root, "commit", "-q", "-m", f"metrics {value}")
    return root


def test_identical_metrics_pass() -> None:
    assert verdicts(dict(BASELINE)) == {"test_neg_elbo": "ok", "active_units": "ok", "test_mse": "info"}


def test_worse_value_beyond_tolerance_regresses() -> None:
    assert verdicts({**BASELINE, "test_neg_elbo": 151.5})["test_neg_elbo"] == "REGRESSED"
    assert verdicts({**BASELINE, "active_units": 1})["active_units"] == "REGRESSED"


def test_worse_value_within_or_exactly_at_tolerance_passes() -> None:
    assert verdicts({**BASELINE, "test_neg_elbo": 150.9})["test_neg_elbo"] == "ok"
    # 151.3 - 150.3 is 1.0000000000000142 in floating point: still exactly the tolerance.
    assert verdict(150.3, 151.3, LOWER) == "ok"


def test_better_value_passes_in_each_direction() -> None:
    assert verdicts({**BASELINE, "test_neg_elbo": 120.0, "active_units": 3}) == {
        "test_neg_elbo": "better", "active_units": "better", "test_mse": "info"}


def test_non_finite_new_value_fails_and_finite_value_after_broken_baseline_passes() -> None:
    assert verdict(150.0, math.nan, LOWER) == "not finite"
    assert verdict(150.0, math.inf, LOWER) == "not finite"
    assert verdict(math.nan, 150.0, LOWER) == "better"


def test_gated_metric_missing_from_either_side_fails() -> None:
    assert verdicts({"active_units": 2})["test_neg_elbo"] == "missing"
    assert verdicts(dict(BASELINE), baseline={"active_units": 2})["test_neg_elbo"] == "missing"


def test_ungated_metric_is_information_even_when_missing_or_nan() -> None:
    rows = compare_metrics({"test_mse": 0.05}, {"test_mse": math.nan, "extra": 1.0}, {})
    assert [(row.metric, row.verdict, row.failed) for row in rows] == [
        ("test_mse", "info", False), ("extra", "info", False)]


def test_markdown_table_lists_gated_metrics_first_with_signed_deltas() -> None:
    rows = compare_metrics({"test_mse": 0.05, "test_neg_elbo": 150.0, "active_units": 2},
                           {"test_mse": 0.04, "test_neg_elbo": 152.25, "active_units": 2}, TOLERANCES)
    assert format_table(rows).splitlines() == [
        "| metric | baseline | new | delta | allowed | verdict |",
        "|:--|--:|--:|--:|:--|:--|",
        "| test_neg_elbo | 150 | 152.25 | +2.25 | rise <= 1 | REGRESSED |",
        "| active_units | 2 | 2 | +0 | drop <= 0 | ok |",
        "| test_mse | 0.05 | 0.04 | -0.01 |  | info |",
    ]
    assert format_table([Row("test_nll_is", None, 90.0, LOWER, "missing")]).endswith(
        "| test_nll_is | n/a | 90 | n/a | rise <= 1 | missing |")


def test_main_passes_against_baseline_file_and_appends_summary(
        tmp_path: Path, params: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = write_json(tmp_path / "baseline.json", BASELINE)
    new = write_json(tmp_path / "metrics.json", {**BASELINE, "test_neg_elbo": 150.5})
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    code = main(["--params", str(params), "--metrics", str(new), "--baseline", str(baseline),
                 "--summary", str(summary)])
    out = capsys.readouterr().out
    assert code == 0
    assert "| test_neg_elbo | 150 | 150.5 | +0.5 | rise <= 1 | ok |" in out
    assert "**Gate passed:** 2 gated metric(s) within tolerance." in out
    assert summary.read_text() == "earlier step\n" + out


def test_main_fails_on_nan_in_new_file_with_table_and_one_line_reason(
        tmp_path: Path, params: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = write_json(tmp_path / "baseline.json", BASELINE)
    new = tmp_path / "metrics.json"
    new.write_text('{"test_neg_elbo": NaN, "active_units": 2}')
    code = main(["--params", str(params), "--metrics", str(new), "--baseline", str(baseline)])
    captured = capsys.readouterr()
    assert code == 1
    assert "| test_neg_elbo | 150 | nan | nan | rise <= 1 | not finite |" in captured.out
    assert captured.err == f"check: error: gate failed against {baseline}: test_neg_elbo not finite\n"


def test_main_reads_the_baseline_committed_at_head_or_an_older_revision(
        repo: Path, params: Path, capsys: pytest.CaptureFixture[str]) -> None:
    metrics = write_json(repo / "reports" / "metrics.json", {"test_neg_elbo": 104.5, "active_units": 2})
    assert main(["--params", str(params), "--metrics", str(metrics)]) == 0
    assert "vs `HEAD:reports/metrics.json`" in capsys.readouterr().out
    assert main(["--params", str(params), "--metrics", str(metrics), "--baseline", "HEAD~1"]) == 1
    captured = capsys.readouterr()
    assert "| test_neg_elbo | 100 | 104.5 | +4.5 | rise <= 1 | REGRESSED |" in captured.out
    assert captured.err == "check: error: gate failed against HEAD~1:reports/metrics.json: test_neg_elbo REGRESSED\n"


def test_main_cannot_compare_without_a_committed_baseline(
        repo: Path, params: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fresh = write_json(repo / "reports" / "other.json", BASELINE)
    assert main(["--params", str(params), "--metrics", str(fresh)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("check: error: cannot compare: no baseline: reports/other.json is not committed "
                            "at HEAD (commit one, or pass --baseline FILE)\n")


def test_main_cannot_compare_with_an_unknown_revision(
        repo: Path, params: Path, capsys: pytest.CaptureFixture[str]) -> None:
    metrics = repo / "reports" / "metrics.json"
    assert main(["--params", str(params), "--metrics", str(metrics), "--baseline", "no-such-branch"]) == 1
    assert "cannot compare: --baseline 'no-such-branch' is neither a metrics file nor a git revision" in (
        capsys.readouterr().err)


def test_main_cannot_compare_unreadable_json(
        tmp_path: Path, params: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = write_json(tmp_path / "baseline.json", BASELINE)
    broken = tmp_path / "metrics.json"
    broken.write_text('{"test_neg_elbo": 150.0,')
    assert main(["--params", str(params), "--metrics", str(broken), "--baseline", str(baseline)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"check: error: cannot compare: {broken} is not valid JSON (")
    assert err.count("\n") == 1


def test_check_does_not_import_tensorflow_or_keras() -> None:
    probe = ("import sys, pipeline.check; "
             "print(sorted({'tensorflow', 'keras'} & {name.split('.')[0] for name in sys.modules}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
