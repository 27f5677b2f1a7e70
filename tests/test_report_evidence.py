"""What the report adds for a reviewer: a manifold over the data, baseline deltas, per-class bars, the run's link,
the conditional manifold one class at a time, and the model card with front matter other tools read."""

import html
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_figures, git
from huggingface_hub import ModelCard
from test_report import METRICS, fake_vae, sample_data, small_params
from test_report_conditional import HISTORY, SpellingCodec

from pipeline.core.params import parse_params
from pipeline.reporting import figures
from pipeline.reporting.evidence import deltas, per_class_rows, run_url
from pipeline.reporting.model_card import CardInputs, Lineage, anchor_id, render_model_card
from pipeline.reporting.page_sections import Deltas, Evidence
from pipeline.reporting.report_files import HTML_FILE, MODEL_CARD_FILE, PER_CLASS_FIGURE, write_report
from pipeline.tracking.run_file import RunRef

LOCK = """\
schema: '2.0'
stages:
  prepare:
    deps:
    - path: data/raw
      md5: aaa.dir
    - path: pipeline/prepare.py
      md5: bbb
    params:
      params.yaml:
        data.seed: 42
  train:
    deps:
    - path: data/prepared
      md5: ccc.dir
    - path: pipeline/model
      md5: ddd.dir
    - path: pipeline/train.py
      md5: eee
    params:
      params.yaml:
        train.epochs: 5
"""
CARD_METRICS = {"test_neg_elbo": 165.9037, "test_nll_is": 164.2764, "active_units": 2, "sample_fid": 12.5,
                "sample_precision": 0.75}
RUN = {"run_id": "0123456789abcdef", "experiment_id": "3", "tracking_uri": "http://127.0.0.1:5000",
       "models": {"decoder": "m-dec", "encoder": "m-enc", "vae": "m-vae"}}


def codes_with_ones_far_below() -> np.ndarray:
    """z_mean as the default run has it: most codes within ±3, the 1s at z₂ ≈ −5 … −10."""
    rng = np.random.default_rng(0)
    codes = rng.normal(0, 1.2, (1000, 2))
    codes[:120, 1] = rng.uniform(-10, -5, 120)
    return codes


def test_the_manifold_range_follows_the_test_codes_and_the_fixed_grid_stays_available() -> None:
    codes = codes_with_ones_far_below()
    settings = small_params().report
    assert figures.manifold_range(settings, codes) == settings.grid_range == (-3.0, 3.0)
    data = settings.model_copy(update={"manifold_range": "data"})
    low, high = figures.manifold_range(data, codes)
    assert low == pytest.approx(np.percentile(codes[:, 1], 1.0)) and low < -9
    assert high == pytest.approx(max(np.percentile(codes, 99.0, axis=0)))
    wide = data.model_copy(update={"range_percentiles": (0.0, 100.0)})
    assert figures.manifold_range(wide, codes) == (codes.min(), codes.max())


def test_the_data_range_of_a_one_dimensional_space_reads_z1_and_a_point_cloud_falls_back_to_the_grid() -> None:
    data = small_params().report.model_copy(update={"manifold_range": "data", "grid_dims": (0, 1)})
    line = np.linspace(-4.0, 6.0, 101)[:, None]
    assert figures.manifold_range(data, line) == pytest.approx((-3.9, 5.9))
    assert figures.manifold_range(data, np.ones((10, 2))) == data.grid_range  # no extent: the fixed grid


@pytest.mark.parametrize(("text", "reason"), [
    ("report:\n  range_percentiles: [99, 1]\n", "0 <= low < high <= 100"),
    ("report:\n  range_percentiles: [0, 101]\n", "0 <= low < high <= 100"),
    ("report:\n  manifold_range: auto\n", "'data' or 'fixed'"),
])
def test_a_bad_manifold_range_param_is_refused(text: str, reason: str) -> None:
    import yaml

    from pipeline.core.params import ParamsError

    with pytest.raises(ParamsError, match=reason.replace("(", r"\(")):
        parse_params(yaml.safe_load(text))


def evidence(tmp_path: Path) -> Evidence:
    rows = [(str(k), 150.0 + 3 * k) for k in range(10)]
    from pipeline.core.param_sections import Tolerance
    from pipeline.gate.comparison import compare_metrics

    gated = compare_metrics({"test_neg_elbo": 160.0, "active_units": 2}, {"test_neg_elbo": 165.0, "active_units": 2},
                            {"test_neg_elbo": Tolerance(tolerance=2.0)})
    card = render_model_card(CardInputs(small_params(), "vae", 2, Lineage.from_lock(LOCK), CARD_METRICS, RUN))
    return Evidence(Deltas("HEAD:reports/metrics.json (abc1234567)", gated), "http://127.0.0.1:5000/#/x", card, rows)


def test_the_page_shows_the_deltas_the_bars_the_runs_link_and_the_card(tmp_path: Path) -> None:
    x, y = sample_data()
    written = write_report(small_params(), fake_vae(), x, y, HISTORY, METRICS, "run-1", tmp_path, evidence(tmp_path))
    assert {PER_CLASS_FIGURE, MODEL_CARD_FILE} <= {path.name for path in written}
    assert_figures(tmp_path, {PER_CLASS_FIGURE: figures.PER_CLASS_SIZE})
    page = (tmp_path / HTML_FILE).read_text(encoding="utf-8")
    assert "<h2>Against the baseline</h2>" in page and "HEAD:reports/metrics.json (abc1234567)" in page
    assert '<tr class="failed"><td><code>test_neg_elbo</code></td><td class="number">160.0000</td>' in page
    assert '<a id="run-link" href="http://127.0.0.1:5000/#/x"><code id="run-id">run-1</code></a>' in page
    assert '<section id="model-card">' in page and f'<a id="{anchor_id("test_neg_elbo")}"></a>' in page
    assert "<th>metric</th>" in page  # the card's Markdown table became an HTML table
    assert (tmp_path / MODEL_CARD_FILE).read_text(encoding="utf-8") == evidence(tmp_path).model_card


def test_without_evidence_the_page_names_the_run_and_writes_no_card(tmp_path: Path) -> None:
    x, y = sample_data()
    written = write_report(small_params(), fake_vae(), x, y, HISTORY, METRICS, "run-1", tmp_path)
    assert not {PER_CLASS_FIGURE, MODEL_CARD_FILE} & {path.name for path in written}
    page = (tmp_path / HTML_FILE).read_text(encoding="utf-8")
    assert "(a local store: open it with <code>uv run mlflow ui</code>)" in page and "Model card" not in page


class PixelCodec(SpellingCodec):
    """The conditional stand-in, its 2 × 2 spelled image spread over 28 × 28 pixels."""

    def decode(self, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        return 1 / (1 + np.exp(-np.tile(super().decode(z, labels), 196) * np.linspace(-1, 1, 784)))


@pytest.mark.integration
def test_the_conditional_manifold_shows_one_class_at_a_time_at_full_size(tmp_path: Path) -> None:
    from PIL import Image

    codec = PixelCodec([])
    x, y = sample_data(60)
    write_report(small_params(), codec, x, y, HISTORY, METRICS, "run-c", tmp_path)
    page = (tmp_path / HTML_FILE).read_text(encoding="utf-8")
    assert page.count('name="class-picker"') == codec.num_classes
    assert page.count(" checked>") == 1 and page.count('class="one-class"') == codec.num_classes
    for index in range(codec.num_classes):
        assert f"#class-{index}:checked ~ #class-{index}-image {{ display: block; }}" in page
    import base64
    import io

    first = page.split('id="class-0-image" alt="manifold of class 0" src="data:image/png;base64,', 1)[1]
    image = Image.open(io.BytesIO(base64.b64decode(first.split('"', 1)[0])))
    assert image.size == tuple(int(inches * figures.DPI) for inches in figures.MANIFOLD_SIZE)


def test_the_card_front_matter_is_a_hugging_face_model_index_with_every_metric() -> None:
    card = render_model_card(CardInputs(small_params(), "vae", 2, Lineage.from_lock(LOCK), CARD_METRICS, RUN,
                                        classifier_accuracy=0.9922, test_count=10_000))
    parsed = ModelCard(card)
    assert parsed.data.library_name == "keras" and parsed.data.datasets == ["mnist"]
    results = {result.metric_type: result.metric_value for result in parsed.data.eval_results}
    assert results == pytest.approx(CARD_METRICS)
    assert {result.dataset_split for result in parsed.data.eval_results} == {"test"}
    assert "99.22 % test accuracy" in card and "`m-dec`" not in card and 'load_model("models:/m-dec")' in card


def test_the_card_names_the_data_and_code_digests_the_run_and_the_registry_history() -> None:
    from pipeline.tracking.registry import VersionRecord

    history = [VersionRecord("vae-mnist-decoder", "2", RUN["run_id"], "2026-12-05 16:00", ("champion",), "HEAD"),
               VersionRecord("vae-mnist-decoder", "1", "fedcba9876543210", "2026-12-01 09:00", (), "")]
    card = render_model_card(CardInputs(small_params(), "vae", 2, Lineage.from_lock(LOCK), CARD_METRICS, RUN,
                                        registry=history))
    assert "| `data/prepared` | `ccc.dir` |" in card and "| `data/raw` | `aaa.dir` |" in card
    assert "| `pipeline/model` | `ddd.dir` |" in card and "| `pipeline/train.py` | `eee` |" in card
    assert "http://127.0.0.1:5000/#/experiments/3/runs/0123456789abcdef" in card
    assert "| `vae-mnist-decoder` | 2 | `01234567` (this run) | 2026-12-05 16:00 | champion | HEAD |" in card
    assert "| `vae-mnist-decoder` | 1 | `fedcba98` | 2026-12-01 09:00 |  |  |" in card


def test_a_card_escapes_pipes_in_its_anchors_so_the_metrics_table_keeps_its_columns() -> None:
    from markdown_it import MarkdownIt

    card = render_model_card(CardInputs(small_params(), "vae", 2, Lineage({}, {}), {"test_kl_loss": 12.9}, RUN))
    table = MarkdownIt("commonmark").enable("table").render(card.split("## Evaluation", 1)[1])
    row = table.split("<tbody>", 1)[1].split("</tr>", 1)[0]
    assert row.count("<td") == 5 and "KL(q(z|x) ‖ N(0, I))" in html.unescape(row)


def test_a_lock_without_stages_or_of_another_layout() -> None:
    assert Lineage.from_lock("").data() == []
    with pytest.raises(ValueError, match="no mapping of stages"):
        Lineage.from_lock("stages: [a, b]\n")


def test_per_class_rows_read_evaluates_csv_and_tolerate_its_absence(tmp_path: Path) -> None:
    csv_file = tmp_path / "per_class.csv"
    csv_file.write_text("class,class_name,count,test_neg_elbo\n0,0,980,150.5\n1,1,1135,120.25\n")
    assert per_class_rows(csv_file) == [("0", 150.5), ("1", 120.25)]
    assert per_class_rows(tmp_path / "absent.csv") == []


def test_deltas_compare_with_the_metrics_committed_at_head_and_say_why_when_there_are_none(tmp_path: Path) -> None:
    params = parse_params({"check": {"tolerances": {"test_neg_elbo": {"tolerance": 2.0}}}})
    metrics = tmp_path / "reports" / "metrics.json"
    metrics.parent.mkdir()
    metrics.write_text(json.dumps({"test_neg_elbo": 160.0}))
    missing = deltas(params, metrics, {"test_neg_elbo": 170.0})
    assert not missing.rows and "not inside a git repository" in missing.missing
    for args in (["init", "-q"], ["add", "reports/metrics.json"], ["commit", "-qm", "baseline"]):
        git(tmp_path, *args)
    found = deltas(params, metrics, {"test_neg_elbo": 170.0})
    assert found.baseline_label.startswith("HEAD:reports/metrics.json (")
    assert [(row.metric, row.delta, row.verdict) for row in found.rows] == [("test_neg_elbo", 10.0, "REGRESSED")]


def test_the_run_is_linked_only_on_a_server() -> None:
    assert run_url(RunRef("r", "4", "https://mlflow.example.org/")) == "https://mlflow.example.org/#/experiments/4/runs/r"
    assert run_url(RunRef("r", "4", "sqlite:////x/mlflow.db")) is None
