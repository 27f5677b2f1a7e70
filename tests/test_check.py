"""The regression gate: verdicts under tolerances, the git baseline, the table, and one-line errors."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import git, markdown_lines, markdown_tables

from pipeline.check import main
from pipeline.core.param_sections import Tolerance
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


NON_FINITE = [math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("tolerance", [LOWER, HIGHER], ids=["lower-is-better", "higher-is-better"])
def test_non_finite_value_on_either_side_fails_naming_the_side(value: float, tolerance: Tolerance) -> None:
    assert verdict(150.0, value, tolerance) == "new not finite"
    assert verdict(value, 150.0, tolerance) == "baseline not finite"
    assert verdict(value, value, tolerance) == "baseline and new not finite"


def test_gated_metric_missing_from_either_side_fails_naming_the_side() -> None:
    assert verdicts({"active_units": 2})["test_neg_elbo"] == "new missing"
    assert verdicts(dict(BASELINE), baseline={"active_units": 2})["test_neg_elbo"] == "baseline missing"
    assert verdicts({}, baseline={})["test_neg_elbo"] == "baseline and new missing"
    assert verdict(None, math.nan, LOWER) == "baseline missing"  # missing is said first, then not finite


@pytest.mark.parametrize(
    ("baseline_json", "new_json", "row", "reason"),
    [
        ("NaN", "999.0", "| test_neg_elbo | nan | 999 | nan | rise <= 1 | baseline not finite |",
         "test_neg_elbo baseline not finite"),
        ("null", "150.0", "| test_neg_elbo | nan | 150 | nan | rise <= 1 | baseline not finite |",
         "test_neg_elbo baseline not finite"),
        ("Infinity", "150.0", "| test_neg_elbo | inf | 150 | -inf | rise <= 1 | baseline not finite |",
         "test_neg_elbo baseline not finite"),
        ("-Infinity", "150.0", "| test_neg_elbo | -inf | 150 | inf | rise <= 1 | baseline not finite |",
         "test_neg_elbo baseline not finite"),
        ("150.0", "-Infinity", "| test_neg_elbo | 150 | -inf | -inf | rise <= 1 | new not finite |",
         "test_neg_elbo new not finite"),
        ("150.0", "null", "| test_neg_elbo | 150 | nan | nan | rise <= 1 | new not finite |",
         "test_neg_elbo new not finite"),
    ],
    ids=["baseline-nan", "baseline-null", "baseline-inf", "baseline-minus-inf", "new-minus-inf", "new-null"],
)
def test_main_fails_on_a_non_finite_value_on_either_side_naming_metric_and_side(
        tmp_path: Path, params: Path, capsys: pytest.CaptureFixture[str],
        baseline_json: str, new_json: str, row: str, reason: str) -> None:
    """The reported case: a NaN baseline against 999.0 used to pass as ``better``."""
    baseline = tmp_path / "baseline.json"
    baseline.write_text(f'{{"test_neg_elbo": {baseline_json}, "active_units": 2}}')
    new = tmp_path / "metrics.json"
    new.write_text(f'{{"test_neg_elbo": {new_json}, "active_units": 2}}')
    code = main(["--params", str(params), "--metrics", str(new), "--baseline", str(baseline)])
    captured = capsys.readouterr()
    assert code == 1
    assert row in captured.out
    assert captured.err == f"check: error: gate failed against {baseline}: {reason}\n"


HUGE_INTEGER = "1" + "0" * 400
NOT_A_FLOAT = {
    "400-digit-integer": (HUGE_INTEGER, "is an integer of about 401 digits, beyond the range of a float"),
    "huge-negative-integer": (f"-{HUGE_INTEGER}", "is an integer of about 401 digits, beyond the range of a float"),
    "bool": ("true", "is True, not a number"),
    "string": ('"166.0"', "is '166.0', not a number"),
    "100-kb-string": (f'"{"9" * 100_000}"', "… (100002 characters), not a number"),
    "object": ('{"mean": 166.0}', "is {'mean': 166.0}, not a number"),
}


def metrics_text(replaced: str, value: str) -> str:
    """BASELINE as JSON text with the metric ``replaced`` written as ``value``."""
    return "{" + ", ".join(f'"{name}": {value if name == replaced else json.dumps(number)}'
                           for name, number in BASELINE.items()) + "}"


@pytest.mark.parametrize("side", ["new", "baseline"])
@pytest.mark.parametrize("metric", ["test_neg_elbo", "test_mse"], ids=["gated", "info-only"])
@pytest.mark.parametrize(("value", "reason"), NOT_A_FLOAT.values(), ids=NOT_A_FLOAT.keys())
def test_a_metric_that_is_no_float_fails_the_file_in_one_short_line(
        tmp_path: Path, params: Path, capsys: pytest.CaptureFixture[str], side: str, metric: str, value: str,
        reason: str) -> None:
    """The reported case: a 400-digit integer crashed the gate with an ``OverflowError`` traceback."""
    files = {name: write_json(tmp_path / f"{name}.json", BASELINE) for name in ("new", "baseline")}
    files[side].write_text(metrics_text(metric, value))
    code = main(["--params", str(params), "--metrics", str(files["new"]), "--baseline", str(files["baseline"])])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.startswith(f"check: error: cannot compare: {files[side]}: metric '{metric}' "), captured.err
    assert reason in captured.err and captured.err.count("\n") == 1 and len(captured.err) < 400, captured.err


@pytest.mark.parametrize(("metric", "code", "row"), [
    ("test_neg_elbo", 1, "| test_neg_elbo | 150 | {sign}inf | {sign}inf | rise <= 1 | new not finite |"),
    ("test_mse", 0, "| test_mse | 0.05 | {sign}inf | {sign}inf |  | info |"),
], ids=["gated", "info-only"])
@pytest.mark.parametrize("sign", ["", "-"], ids=["1e400", "minus-1e400"])
def test_a_number_beyond_a_float_in_exponent_form_is_infinity(
        tmp_path: Path, params: Path, capsys: pytest.CaptureFixture[str], metric: str, code: int, row: str,
        sign: str) -> None:
    """JSON's ``1e400`` reads as infinity, as ``Infinity`` does: a gated row fails, an info-only row shows it."""
    baseline = write_json(tmp_path / "baseline.json", BASELINE)
    new = tmp_path / "metrics.json"
    new.write_text(metrics_text(metric, f"{sign}1e400"))
    assert main(["--params", str(params), "--metrics", str(new), "--baseline", str(baseline)]) == code
    assert row.format(sign=sign) in capsys.readouterr().out


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
    assert format_table([Row("test_nll_is", None, 90.0, LOWER, "baseline missing")]).endswith(
        "| test_nll_is | n/a | 90 | n/a | rise <= 1 | baseline missing |")


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
    written = summary.read_text()
    assert written.startswith("earlier step\n<!-- vae-pipeline gate report -->\n## ✅ Gate passed\n")
    assert "| `test_neg_elbo` | 150.0000 | 150.5000 | +0.5000 | rise ≤ 1.0000 | ✅ ok |" in written


def test_main_fails_on_nan_in_new_file_with_table_and_one_line_reason(
        tmp_path: Path, params: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = write_json(tmp_path / "baseline.json", BASELINE)
    new = tmp_path / "metrics.json"
    new.write_text('{"test_neg_elbo": NaN, "active_units": 2}')
    code = main(["--params", str(params), "--metrics", str(new), "--baseline", str(baseline)])
    captured = capsys.readouterr()
    assert code == 1
    assert "| test_neg_elbo | 150 | nan | nan | rise <= 1 | new not finite |" in captured.out
    assert captured.err == f"check: error: gate failed against {baseline}: test_neg_elbo new not finite\n"


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
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=600)
    assert done.stdout.strip() == "[]"


PARAMS_AT_BASELINE = PARAMS_YAML + "train:\n  beta: 0.1\n  learning_rate: 0.001\nmodel:\n  latent_dim: 2\n"


@pytest.fixture
def params_repo(tmp_path: Path) -> Path:
    """A git repository whose HEAD commits params.yaml (train.beta 0.1) and its metrics."""
    root = tmp_path / "params-repo"
    root.mkdir()
    git(root, "init", "-q")
    (root / "params.yaml").write_text(PARAMS_AT_BASELINE)
    write_json(root / "reports" / "metrics.json",
               {"test_neg_elbo": 150.0, "test_reconstruction_loss": 140.0, "active_units": 2})
    git(root, "add", "params.yaml", "reports/metrics.json")
    git(root, "commit", "-q", "-m", "baseline")
    return root


def run_check(root: Path, *extra: str) -> int:
    return main(["--params", str(root / "params.yaml"), "--metrics", str(root / "reports" / "metrics.json"),
                 *extra])


def test_gate_lists_the_params_that_differ_from_the_baseline_commit(
        params_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The reported case: train.beta moved from 0.1 to 1.0, a metric regressed, and the gate never said why."""
    write_json(params_repo / "reports" / "metrics.json",
               {"test_neg_elbo": 147.0, "test_reconstruction_loss": 149.0, "active_units": 2})
    tolerances = PARAMS_YAML.replace("check:\n  tolerances:\n",
                                     "check:\n  tolerances:\n    test_reconstruction_loss: {tolerance: 3.0}\n")
    (params_repo / "params.yaml").write_text(tolerances + "train:\n  beta: 1.0\n  learning_rate: 0.001\n"
                                             "model:\n  latent_dim: 2\n")
    assert run_check(params_repo) == 1
    captured = capsys.readouterr()
    assert "**Params that differ from the baseline** (`HEAD:params.yaml`):" in captured.out
    assert "| check.tolerances.test_reconstruction_loss.tolerance | n/a | 3.0 |" in captured.out
    assert "| train.beta | 0.1 | 1.0 |" in captured.out
    assert captured.err == (
        "check: error: gate failed against HEAD:reports/metrics.json: test_reconstruction_loss REGRESSED "
        "(params changed: check.tolerances.test_reconstruction_loss.tolerance, train.beta)\n")


@pytest.mark.parametrize(
    ("working", "rows"),
    [
        (PARAMS_AT_BASELINE.replace("learning_rate: 0.001", "learning_rate: 1e-3"), []),
        (PARAMS_AT_BASELINE.replace("  latent_dim: 2\n", "  latent_dim: 2\n  intermediate_dim: 64\n"),
         ["| model.intermediate_dim | n/a | 64 |"]),
        (PARAMS_AT_BASELINE.replace("model:\n  latent_dim: 2\n", ""), ["| model.latent_dim | 2 | n/a |"]),
        (PARAMS_AT_BASELINE + "report:\n  grid_range: [-2.0, 2.0]\n", ['| report.grid_range | n/a | [-2.0, 2.0] |']),
    ],
    ids=["same-value-other-yaml-form", "key-added", "key-removed", "list-added"],
)
def test_params_diff_shows_added_and_removed_keys_and_ignores_a_new_spelling_of_the_same_value(
        params_repo: Path, capsys: pytest.CaptureFixture[str], working: str, rows: list[str]) -> None:
    (params_repo / "params.yaml").write_text(working)
    assert run_check(params_repo) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| ") and line.count("|") == 4]
    assert table[1:] == rows
    if not rows:
        assert "**Params:** the same as at `HEAD:params.yaml`." in out


def test_params_are_not_compared_against_a_baseline_file_unless_given_baseline_params(
        params_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = write_json(tmp_path / "baseline.json", {"test_neg_elbo": 150.0, "active_units": 2})
    assert run_check(params_repo, "--baseline", str(baseline)) == 0
    assert ("**Params:** not compared: the baseline is a file; pass --baseline-params FILE to compare them."
            in capsys.readouterr().out)
    old_params = tmp_path / "old-params.yaml"
    old_params.write_text(PARAMS_AT_BASELINE.replace("latent_dim: 2", "latent_dim: 8"))
    assert run_check(params_repo, "--baseline", str(baseline), "--baseline-params", str(old_params)) == 0
    out = capsys.readouterr().out
    assert f"**Params that differ from the baseline** (`{old_params}`):" in out
    assert "| model.latent_dim | 8 | 2 |" in out


@pytest.mark.parametrize(
    ("committed", "reason"),
    [(None, "params.yaml is not committed at HEAD"), ("train: [\n", "not valid YAML"),
     ("- a list\n", "not a mapping of sections")],
    ids=["not-committed", "invalid-yaml", "not-a-mapping"],
)
def test_params_that_cannot_be_read_at_the_baseline_are_a_note_not_a_failure(
        params_repo: Path, capsys: pytest.CaptureFixture[str], committed: str | None, reason: str) -> None:
    if committed is None:
        git(params_repo, "rm", "-q", "--cached", "params.yaml")
    else:
        (params_repo / "params.yaml").write_text(committed)
        git(params_repo, "add", "params.yaml")
    git(params_repo, "commit", "-q", "-m", "params changed")
    (params_repo / "params.yaml").write_text(PARAMS_AT_BASELINE)
    assert run_check(params_repo) == 0
    out = capsys.readouterr().out
    assert "**Params:** not compared: " in out and reason in out


CVAE_KIND = {"kind": "cvae", "likelihood": "p(x|y)", "num_classes": 10}


def test_gate_refuses_a_conditional_run_against_an_unconditional_baseline_file(
        tmp_path: Path, params: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = write_json(tmp_path / "baseline.json", BASELINE)
    new = write_json(tmp_path / "reports" / "metrics.json", BASELINE)
    kind = write_json(tmp_path / "reports" / "model.json", CVAE_KIND)
    args = ["--params", str(params), "--metrics", str(new), "--baseline", str(baseline), "--model-kind", str(kind)]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("check: error: cannot compare: the baseline is from the unconditional VAE, the new "
                            "metrics from the conditional VAE, whose likelihoods differ; compare runs of one "
                            "model kind or pass --allow-model-change\n")
    assert main([*args, "--baseline-model-kind", str(kind)]) == 0, "two conditional runs compare as usual"
    assert "Models differ" not in capsys.readouterr().out


def test_allowed_model_change_compares_and_says_so_above_the_table(
        tmp_path: Path, params: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = write_json(tmp_path / "baseline.json", BASELINE)
    baseline_kind = write_json(tmp_path / "baseline_model.json", CVAE_KIND)
    new = write_json(tmp_path / "reports" / "metrics.json", {**BASELINE, "test_neg_elbo": 160.0})
    code = main(["--params", str(params), "--metrics", str(new), "--baseline", str(baseline),
                 "--baseline-model-kind", str(baseline_kind), "--model-kind", str(tmp_path / "absent.json"),
                 "--allow-model-change"])
    out = capsys.readouterr().out
    assert code == 1, "allowing the change still gates the numbers"
    heading, note, table = out.split("\n\n")[:3]
    assert note == ("**Models differ:** the baseline is from the conditional VAE, the new metrics from the "
                    "unconditional VAE.")
    assert heading.startswith("### Metrics gate:") and table.startswith("| metric |")


def test_git_baseline_kind_is_its_committed_model_json_and_absent_means_unconditional(
        repo: Path, params: Path, capsys: pytest.CaptureFixture[str]) -> None:
    metrics = write_json(repo / "reports" / "metrics.json", {"test_neg_elbo": 104.5, "active_units": 2})
    kind = write_json(repo / "reports" / "model.json", CVAE_KIND)
    assert main(["--params", str(params), "--metrics", str(metrics)]) == 1, "HEAD predates model.json: a VAE"
    assert "the baseline is from the unconditional VAE" in capsys.readouterr().err
    git(repo, "add", "reports")
    git(repo, "commit", "-q", "-m", "a conditional run")
    assert main(["--params", str(params), "--metrics", str(metrics)]) == 0
    kind.unlink()
    assert main(["--params", str(params), "--metrics", str(metrics)]) == 1
    assert "the baseline is from the conditional VAE, the new metrics from the unconditional VAE" in (
        capsys.readouterr().err)


@pytest.mark.parametrize(("text", "reason"), [("[1]", "JSON object"), ('{"kind": "gan"}', "unknown model kind 'gan'"),
                                              ("{", "JSON object")])
def test_an_unreadable_model_kind_is_one_line_naming_the_file(
        tmp_path: Path, params: Path, capsys: pytest.CaptureFixture[str], text: str, reason: str) -> None:
    baseline = write_json(tmp_path / "baseline.json", BASELINE)
    new = write_json(tmp_path / "metrics.json", BASELINE)
    kind = tmp_path / "model.json"
    kind.write_text(text)
    assert main(["--params", str(params), "--metrics", str(new), "--baseline", str(baseline),
                 "--model-kind", str(kind)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"check: error: {kind}") and reason in err and err.count("\n") == 1


def test_a_baseline_files_kind_is_the_model_json_beside_it_unless_given(
        tmp_path: Path, params: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = write_json(tmp_path / "baseline" / "metrics.json", BASELINE)
    new = write_json(tmp_path / "reports" / "metrics.json", BASELINE)
    write_json(tmp_path / "reports" / "model.json", CVAE_KIND)
    args = ["--params", str(params), "--metrics", str(new), "--baseline", str(baseline)]
    assert main(args) == 1, "no model.json beside the baseline: the unconditional VAE"
    assert "the baseline is from the unconditional VAE" in capsys.readouterr().err
    write_json(tmp_path / "baseline" / "model.json", CVAE_KIND)
    assert main(args) == 0, "the model.json beside the baseline says cvae, like the new metrics"
    assert "Models differ" not in capsys.readouterr().out
    vae = write_json(tmp_path / "vae_model.json", {"kind": "vae", "likelihood": "p(x)", "num_classes": 0})
    assert main([*args, "--baseline-model-kind", str(vae)]) == 1, "an explicit --baseline-model-kind wins"
    assert "the baseline is from the unconditional VAE" in capsys.readouterr().err


MARKDOWN_TEXT = {
    "pipe": "vae|mnist", "escaped-pipe": "a\\|b", "table-row": "| x | y |", "backtick": "a`b", "code": "`x`",
    "newline": "line1\nline2", "html": "<b>bold</b>", "emphasis": "*x* _y_ __z__", "word_with_underscores": "a_b_c",
    "link": "[x](http://example.com)", "image": "![x](y.png)", "entity": "&amp; &#124;", "strike": "~~gone~~",
    "backslash": "C:\\dir\\", "list": "[-2.0, 2.0]",
}


@pytest.mark.parametrize("value", MARKDOWN_TEXT.values(), ids=MARKDOWN_TEXT.keys())
def test_every_value_in_the_gates_markdown_shows_as_written(
        params_repo: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    """The reported case: ``train.experiment: "vae|mnist"`` split its table row, so the CI summary and the promoted
    version's description showed a wrong value. Param values, param keys, metric names (gated and info-only) and
    the file labels are checked as GitHub renders them."""
    shown = value.replace("\n", "\\n")  # a newline cannot be inside a table row: it shows as \n
    (params_repo / "params.yaml").write_text(
        f"check:\n  tolerances:\n    {json.dumps(value)}: {{tolerance: 0.0}}\n"
        f"train:\n  beta: 0.1\n  learning_rate: 0.001\n  experiment: {json.dumps(value)}\nmodel:\n  latent_dim: 2\n")
    metrics = params_repo / "reports" / "metrics.json"
    write_json(metrics, {"test_neg_elbo": 150.0, value: 1.0})
    git(params_repo, "add", "reports/metrics.json")
    git(params_repo, "commit", "-q", "-m", "baseline metrics")
    write_json(metrics, {"test_neg_elbo": 150.0, value: 2.0, f"info {value}": 1.0})
    assert run_check(params_repo) == 1
    captured = capsys.readouterr()
    metrics_table, params_table = markdown_tables(captured.out)
    assert [shown, "1", "2", "+1", "rise <= 0", "REGRESSED"] in metrics_table
    assert [f"info {shown}", "n/a", "1", "n/a", "", "info"] in metrics_table
    assert ["train.experiment", "n/a", shown] in params_table
    assert [f"check.tolerances.{shown}.tolerance", "n/a", "0.0"] in params_table
    assert f"<strong_open>Gate failed:<strong_close> {shown} REGRESSED." in markdown_lines(captured.out)
    assert captured.err.count("\n") == 1 and f"{shown} REGRESSED" in captured.err


@pytest.mark.parametrize("folder", ["a`b", "``x", "x|y", "*x*"])
def test_file_labels_in_the_gates_heading_show_as_written(
        tmp_path: Path, params: Path, capsys: pytest.CaptureFixture[str], folder: str) -> None:
    new = write_json(tmp_path / folder / "metrics.json", BASELINE)
    baseline = write_json(tmp_path / folder / "baseline.json", BASELINE)
    assert main(["--params", str(params), "--metrics", str(new), "--baseline", str(baseline)]) == 0
    assert markdown_lines(capsys.readouterr().out)[0] == f"Metrics gate: `{new}` vs `{baseline}`"
