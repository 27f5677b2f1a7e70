"""The gate's pull-request report, rendered as GitHub-flavoured Markdown: the cells a reviewer reads."""

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from pipeline.check import main
from pipeline.core.param_sections import Tolerance
from pipeline.gate.comparison import compare_metrics
from pipeline.gate.params_diff import ParamsDiff
from pipeline.gate.summary import MARKER, RunLink, Side, cell, fixed, pull_request_report

TOLERANCES = {"test_neg_elbo": Tolerance(tolerance=2.0), "active_units": Tolerance(higher_is_better=True),
              "sample_fid": Tolerance(tolerance=1.5)}
OLD = {"test_neg_elbo": 165.903718, "active_units": 2, "test_mse": 0.0454246, "sample_fid": 10.5,
       "sample_fid_low": 10.1, "sample_fid_high": 11.0, "sample_precision": 0.71, "sample_recall": 0.66}
ONE_EPOCH = {"test_neg_elbo": 171.25, "active_units": 2, "test_mse": 0.05, "sample_fid": 14.25,
             "sample_fid_low": 13.5, "sample_fid_high": 15.0, "sample_precision": 0.62, "sample_recall": 0.6}
FIXED = re.compile(r"^([+-]?\d+\.\d{4}|n/a)$")


class Tables(HTMLParser):
    """The rendered page's tables as rows of cell texts (an image cell reads ``img:<src>``), and its links."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.links: list[str] = []
        self.details: list[str] = []
        self._cell: list[str] | None = None
        self._in_details = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img" and self._cell is not None:
            self._cell.append(f"img:{values['src']}")
            if self._in_details:
                self.details.append(values["src"] or "")
        elif tag == "a":
            self.links.append(values["href"] or "")
        elif tag == "details":
            self._in_details += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "details":
            self._in_details -= 1

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def rendered(markdown: str) -> tuple[str, Tables]:
    """HTML as a GFM renderer makes it (tables, raw HTML, autolinks), and its parsed tables."""
    page = MarkdownIt("gfm-like").render(markdown)
    tables = Tables()
    tables.feed(page)
    return page, tables


def table_with(tables: Tables, header: str) -> dict[str, list[str]]:
    """The table whose first header cell is ``header``, keyed by each row's first cell."""
    table = next(table for table in tables.tables if table[0][0] == header)
    assert all(len(row) == len(table[0]) for row in table), f"a row of {header!r} has a stray column"
    return {row[0]: row[1:] for row in table[1:]}


def one_epoch_report(**sides: Side) -> str:
    rows = compare_metrics(OLD, ONE_EPOCH, TOLERANCES)
    params = ParamsDiff("main:params.yaml", {"train.epochs": (5, 1)})
    baseline = sides.get("baseline", Side("main:reports/metrics.json"))
    new = sides.get("new", Side("reports/metrics.json"))
    return pull_request_report(rows, params, OLD, ONE_EPOCH, baseline, new, ["samples.png", "manifold.png"])


def test_a_one_epoch_change_fails_naming_the_param_and_every_metrics_delta() -> None:
    page, tables = rendered(one_epoch_report())
    assert "<h2>❌ Gate failed: test_neg_elbo REGRESSED, sample_fid REGRESSED</h2>" in page
    assert table_with(tables, "param") == {"train.epochs": ["5", "1"]}
    metrics = table_with(tables, "metric")
    assert metrics["test_neg_elbo"] == ["165.9037", "171.2500", "+5.3463", "rise ≤ 2.0000", "❌ REGRESSED"]
    assert metrics["sample_fid"] == ["10.5000", "14.2500", "+3.7500", "rise ≤ 1.5000", "❌ REGRESSED"]
    assert metrics["active_units"] == ["2.0000", "2.0000", "+0.0000", "drop ≤ 0.0000", "✅ ok"]
    assert metrics["test_mse"][-2:] == ["not gated", "info"]
    assert set(metrics) == set(OLD)
    for values in metrics.values():
        assert all(FIXED.match(value) for value in values[:3]), values


def test_the_sample_metrics_show_the_fid_with_its_bootstrap_interval() -> None:
    _, tables = rendered(one_epoch_report())
    samples = table_with(tables, "sample metric")
    assert samples["sample_fid"][:2] == ["10.5000 [10.1000, 11.0000]", "14.2500 [13.5000, 15.0000]"]
    assert samples["sample_precision"][:2] == ["0.7100", "0.6200"]
    assert "sample_label_accuracy" not in samples


def test_a_passing_report_says_so_and_starts_with_the_hidden_marker() -> None:
    rows = compare_metrics(OLD, OLD, TOLERANCES)
    markdown = pull_request_report(rows, ParamsDiff("HEAD:params.yaml"), OLD, OLD, Side("HEAD"), Side("new"), [])
    page, _ = rendered(markdown)
    assert markdown.splitlines()[0] == MARKER
    assert page.startswith(MARKER) and "<h2>✅ Gate passed</h2>" in page  # an HTML comment: not shown
    assert "No param differs from <code>HEAD:params.yaml</code>." in page


def test_both_sides_figures_are_images_inside_a_collapsed_block() -> None:
    markdown = one_epoch_report(baseline=Side("main", figures_url="https://example.org/figs/abc/"),
                                new=Side("head", figures_url="https://example.org/figs/def"))
    page, tables = rendered(markdown)
    assert "<details><summary>Figures: old and new (2 each)</summary>" in page
    figures = table_with(tables, "figure")
    assert figures["samples.png"] == ["img:https://example.org/figs/abc/samples.png",
                                      "img:https://example.org/figs/def/samples.png"]
    assert tables.details == ["https://example.org/figs/abc/samples.png", "https://example.org/figs/def/samples.png",
                              "https://example.org/figs/abc/manifold.png", "https://example.org/figs/def/manifold.png"]


def test_figures_unpublished_say_how_to_publish_them() -> None:
    page, tables = rendered(one_epoch_report())
    assert "<details>" not in page and "--figures-url" in page
    assert not [table for table in tables.tables if table[0][0] == "figure"]


@pytest.mark.parametrize(("value", "expected"), [
    ("a|b", "a|b"), ("a||b", "a||b"), ("end\\", "end\\"), ("two\nlines", "two lines"), ("<b>x</b>", "<b>x</b>"),
    ("`tick`", "`tick`"),
])
def test_pipes_backslashes_newlines_and_html_in_a_cell_stay_inside_it_as_written(value: str, expected: str) -> None:
    markdown = f"| param | new |\n|:--|:--|\n| key | {cell(value)} |\n"
    _, tables = rendered(markdown)
    assert table_with(tables, "param") == {"key": [expected]}


def test_params_with_pipes_keep_their_columns_in_the_report() -> None:
    rows = compare_metrics(OLD, OLD, TOLERANCES)
    params = ParamsDiff("HEAD:params.yaml", {"data.mirrors": (["a|b"], None), "train.optimizer": ("adam", "sgd|x")})
    _, tables = rendered(pull_request_report(rows, params, OLD, OLD, Side("HEAD"), Side("new"), []))
    assert table_with(tables, "param") == {"data.mirrors": ['["a|b"]', "n/a"], "train.optimizer": ["adam", "sgd|x"]}


@pytest.mark.parametrize(("value", "sign", "text"), [
    (165.903718, False, "165.9037"), (0.5, True, "+0.5000"), (-0.00004, True, "-0.0000"), (None, False, "n/a"),
    (float("nan"), False, "nan"), (float("inf"), True, "inf"), (2, False, "2.0000"), (1e300, False, f"{1e300:.4f}"),
])
def test_numbers_have_a_fixed_precision(value: float | None, sign: bool, text: str) -> None:
    assert fixed(value, sign) == text


def test_runs_are_linked_on_a_server_and_named_on_a_local_store(tmp_path: Path) -> None:
    server = tmp_path / "server.json"
    server.write_text(json.dumps({"run_id": "abc123", "experiment_id": "7", "tracking_uri": "http://mlflow:5000/"}))
    local = tmp_path / "local.json"
    local.write_text(json.dumps({"run_id": "def456", "experiment_id": "1", "tracking_uri": "sqlite:////x/mlflow.db"}))
    markdown = one_epoch_report(baseline=Side("main", RunLink.from_run_file(local)),
                                new=Side("head", RunLink.from_run_file(server)))
    page, tables = rendered(markdown)
    assert "http://mlflow:5000/#/experiments/7/runs/abc123" in tables.links
    assert "old: <code>def456</code> (a local store: no link)" in page
    assert RunLink.from_run_file(tmp_path / "absent.json") is None


def test_check_summary_writes_the_report_with_the_new_runs_link_and_published_figures(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("check:\n  tolerances:\n    test_neg_elbo: {tolerance: 2.0}\n")
    old_params = tmp_path / "old-params.yaml"
    old_params.write_text(params.read_text() + "train: {epochs: 5}\n")
    params.write_text(params.read_text() + "train: {epochs: 1}\n")
    baseline = tmp_path / "old" / "metrics.json"
    baseline.parent.mkdir()
    baseline.write_text(json.dumps(OLD))
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "metrics.json").write_text(json.dumps(ONE_EPOCH))
    (reports / "samples.png").write_bytes(b"png")
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"run_id": "r1", "experiment_id": "2", "tracking_uri": "https://mlflow.example.org"}))
    summary = tmp_path / "report.md"
    code = main(["--params", str(params), "--metrics", str(reports / "metrics.json"), "--baseline", str(baseline),
                 "--baseline-params", str(old_params), "--run", str(run), "--summary", str(summary),
                 "--figures-url", "https://example.org/new", "--baseline-figures-url", "https://example.org/old"])
    assert code == 1 and "train.epochs" in capsys.readouterr().err
    page, tables = rendered(summary.read_text())
    assert "❌ Gate failed: test_neg_elbo REGRESSED" in page
    assert table_with(tables, "param") == {"train.epochs": ["5", "1"]}
    assert table_with(tables, "figure") == {"samples.png": ["img:https://example.org/old/samples.png",
                                                            "img:https://example.org/new/samples.png"]}
    assert "https://mlflow.example.org/#/experiments/2/runs/r1" in tables.links
