"""The gate's pull-request report: one Markdown document that a forge shows as a comment, updated on each push.

It holds, in this order: the verdict; the params that changed; every metric as old | new | Δ | tolerance |
verdict, all numbers at ``DECIMALS`` places; the sample metrics with the FID's bootstrap interval; the
figures of both sides in a collapsed ``<details>`` block, as images at URLs the forge can fetch (a
comment cannot embed files); and the MLflow runs, linked when the store is a server. The first line is
``MARKER``, a hidden HTML comment by which CI finds its earlier comment to edit instead of adding one.
Markdown only: GitHub strips scripts, styles and ``data:`` images from comments.
"""

import json
import math
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.gate.comparison import ABSENT, Row, failure_summary
from pipeline.gate.params_diff import ParamsDiff

MARKER = "<!-- vae-pipeline gate report -->"
DECIMALS = 4
FID_INTERVAL = ("sample_fid_low", "sample_fid_high")
SAMPLE_METRICS = {
    "sample_fid": "FID on the classifier's features, lower is better",
    "sample_precision": "share of samples inside the test images' k-NN manifold",
    "sample_recall": "share of test images inside the samples' k-NN manifold",
    "sample_coverage": "share of test images whose k-NN ball holds a sample (Naeem et al. 2020)",
    "sample_label_accuracy": "share of samples the classifier calls the label they were drawn for",
}


@dataclass(frozen=True)
class RunLink:
    """An MLflow run as the report names it: its id, and a URL when the tracking store is a server."""

    run_id: str
    url: str | None = None

    @classmethod
    def from_run_file(cls, path: Path) -> "RunLink | None":
        """The run that ``models/run.json`` names, or ``None`` when the file is absent or unreadable.

        Its ``tracking_uri`` gives the URL ``<server>/#/experiments/<id>/runs/<run>`` when it is http(s).
        """
        try:
            ref = json.loads(Path(path).read_text(encoding="utf-8"))
            run_id, experiment, uri = str(ref["run_id"]), str(ref["experiment_id"]), str(ref["tracking_uri"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        server = uri.startswith(("http://", "https://"))
        return cls(run_id, f"{uri.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}" if server else None)

    def markdown(self) -> str:
        shown = code(self.run_id)
        return f"[{shown}]({self.url})" if self.url else f"{shown} (a local store: no link)"


@dataclass(frozen=True)
class Side:
    """One side of the comparison: its label, its MLflow run and the URL folder its figures are published under."""

    label: str
    run: RunLink | None = None
    figures_url: str | None = None


def cell(text: object) -> str:
    """``text`` shown as written inside a GitHub-flavoured Markdown table cell: every ASCII punctuation mark
    backslash-escaped (CommonMark allows that for each), so no pipe ends the cell and no ``*``, `````, ``<``
    or ``[`` formats or links anything; line breaks become spaces."""
    return "".join(f"\\{char}" if char in string.punctuation else char for char in str(text).replace("\n", " "))


def code(text: object) -> str:
    """``text`` as inline code in a table cell (the table escapes its pipes), or as plain ``cell`` text where a
    backtick or line break would end the code span."""
    text = str(text)
    if "`" in text or "\n" in text:
        return cell(text)
    escaped = text.replace("|", "\\|")
    return f"`{escaped}`"


def fixed(value: float | None, sign: bool = False) -> str:
    """A number at ``DECIMALS`` places (``+`` first with ``sign``), ``n/a`` for none, ``nan``/``inf`` as such."""
    if value is None:
        return ABSENT
    if not math.isfinite(value):
        return str(value)
    return format(value, f"{'+' if sign else ''}.{DECIMALS}f")


def _tolerance(row: Row) -> str:
    if row.tolerance is None:
        return "not gated"
    return f"{'drop' if row.tolerance.higher_is_better else 'rise'} ≤ {fixed(row.tolerance.tolerance)}"


def _verdict(row: Row) -> str:
    mark = "❌ " if row.failed else ("✅ " if row.tolerance is not None else "")
    return f"{mark}{row.verdict}"


def metrics_table(rows: Sequence[Row]) -> str:
    """Every metric as ``metric | old | new | Δ | tolerance | verdict``, numbers right-aligned."""
    lines = ["| metric | old | new | Δ | tolerance | verdict |", "|:--|--:|--:|--:|:--|:--|"]
    lines += [f"| {code(row.metric)} | {fixed(row.baseline)} | {fixed(row.new)} | {fixed(row.delta, sign=True)} "
              f"| {_tolerance(row)} | {cell(_verdict(row))} |" for row in rows]
    return "\n".join(lines)


def _with_interval(metrics: dict[str, float], name: str) -> str:
    value = fixed(metrics.get(name))
    if name == "sample_fid" and all(bound in metrics for bound in FID_INTERVAL):
        low, high = (fixed(metrics[bound]) for bound in FID_INTERVAL)
        return f"{value} [{low}, {high}]"
    return value


def sample_table(baseline: dict[str, float], new: dict[str, float]) -> str:
    """The sample metrics of both sides, the FID with its 95 % bootstrap interval; empty when neither has any."""
    names = [name for name in SAMPLE_METRICS if name in baseline or name in new]
    if not names:
        return ""
    lines = ["| sample metric | old | new | meaning |", "|:--|--:|--:|:--|"]
    lines += [f"| {code(name)} | {_with_interval(baseline, name)} | {_with_interval(new, name)} "
              f"| {SAMPLE_METRICS[name]} |" for name in names]
    return "\n".join(lines)


def params_section(diff: ParamsDiff) -> str:
    """The params that differ, as ``param | old | new``, or a sentence saying why there are none to show."""
    if diff.not_compared:
        return f"Params not compared: {cell(diff.not_compared)}."
    if not diff.changed:
        return f"No param differs from {code(diff.baseline_label)}."
    lines = ["| param | old | new |", "|:--|:--|:--|"]
    lines += [f"| {code(key)} | {cell(_param(old))} | {cell(_param(new))} |"
              for key, (old, new) in sorted(diff.changed.items())]
    return "\n".join(lines)


def _param(value: object) -> str:
    return ABSENT if value is None else value if isinstance(value, str) else json.dumps(value)


def figures_block(names: Sequence[str], baseline: Side, new: Side) -> str:
    """Both sides' figures side by side in a collapsed block, or a sentence when neither side published any."""
    if not names or not (baseline.figures_url or new.figures_url):
        return "Figures: none published for this comparison (pass `--figures-url` and `--baseline-figures-url`)."
    lines = [f"<details><summary>Figures: old and new ({len(names)} each)</summary>", "",
             "| figure | old | new |", "|:--|:--|:--|"]
    for name in names:
        images = [f"![{label} {cell(name)}]({side.figures_url.rstrip('/')}/{name})" if side.figures_url else ABSENT
                  for label, side in (("old", baseline), ("new", new))]
        lines.append(f"| {code(name)} | {images[0]} | {images[1]} |")
    return "\n".join([*lines, "", "</details>"])


def pull_request_report(rows: Sequence[Row], params: ParamsDiff, baseline_metrics: dict[str, float],
                        new_metrics: dict[str, float], baseline: Side, new: Side, figure_names: Sequence[str],
                        model_change: str = "") -> str:
    """The whole report as Markdown, starting with ``MARKER`` and the verdict."""
    failures = failure_summary(rows)
    verdict = f"## ❌ Gate failed: {cell(failures)}" if failures else "## ✅ Gate passed"
    runs = [f"{label}: {side.run.markdown()}" for label, side in (("old", baseline), ("new", new)) if side.run]
    parts = [
        MARKER, verdict, "",
        f"{code(new.label)} against {code(baseline.label)}"
        + (f"; **models differ:** {cell(model_change)}" if model_change else "") + ".", "",
        "### Params that changed", "", params_section(params), "",
        "### Metrics", "", metrics_table(rows), "",
    ]
    samples = sample_table(baseline_metrics, new_metrics)
    if samples:
        parts += ["### Sample quality", "", samples, ""]
    parts += ["### Figures", "", figures_block(figure_names, baseline, new), "",
              "### MLflow runs", "", " · ".join(runs) if runs else "No run file found for either side.", ""]
    return "\n".join(parts)
