"""``python -m pipeline check``: the regression gate on the evaluate stage's metrics.

``dvc metrics diff`` shows changes but always exits 0; this gate fails. It compares the working
tree's metrics with a baseline (by default the copy committed at git ``HEAD``) under params
``check.tolerances``, prints a Markdown table, and exits 1 when a gated metric moved in its bad
direction by more than its tolerance, is missing from either side, or is not finite in the new
file. Metrics without a tolerance are shown as information only.
"""

import argparse
import json
import math
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.cli import run_stage, stage_parser
from pipeline.errors import PipelineError
from pipeline.params import Tolerance, load_params
from pipeline.paths import METRICS_FILE

Verdict = Literal["ok", "better", "REGRESSED", "missing", "not finite", "info"]
FAILING: frozenset[Verdict] = frozenset({"REGRESSED", "missing", "not finite"})
DEFAULT_BASELINE = "HEAD"
ABSENT = "n/a"


class CannotCompareError(PipelineError):
    """The new metrics or the baseline cannot be read, so there is no verdict at all."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"cannot compare: {reason}")


class RegressionError(PipelineError):
    """The comparison ran and at least one gated metric failed it."""


@dataclass(frozen=True)
class Row:
    """One metric's line in the gate's table."""

    metric: str
    baseline: float | None
    new: float | None
    tolerance: Tolerance | None
    verdict: Verdict

    @property
    def delta(self) -> float | None:
        """``new - baseline``, or ``None`` when either side lacks the metric."""
        return None if self.baseline is None or self.new is None else self.new - self.baseline

    @property
    def failed(self) -> bool:
        """Whether this row fails the gate."""
        return self.verdict in FAILING


def compare_metrics(baseline: Mapping[str, float], new: Mapping[str, float],
                    tolerances: Mapping[str, Tolerance]) -> list[Row]:
    """One row per metric: the gated ones in the order of ``tolerances``, then the others."""
    names = dict.fromkeys([*tolerances, *new, *baseline])
    return [
        Row(name, baseline.get(name), new.get(name), tolerances.get(name),
            verdict(baseline.get(name), new.get(name), tolerances.get(name)))
        for name in names
    ]


def verdict(baseline: float | None, new: float | None, tolerance: Tolerance | None) -> Verdict:
    """How one metric fares; a move of exactly the tolerance still passes."""
    if tolerance is None:
        return "info"
    if baseline is None or new is None:
        return "missing"
    if not math.isfinite(new):
        return "not finite"
    if not math.isfinite(baseline):
        return "better"
    worsening = baseline - new if tolerance.higher_is_better else new - baseline
    if worsening > tolerance.tolerance and not math.isclose(worsening, tolerance.tolerance):
        return "REGRESSED"
    return "better" if worsening < 0 else "ok"


def parse_metrics(text: str, source: str) -> dict[str, float]:
    """A flat JSON object of numbers; ``NaN``/``Infinity`` are kept, ``null`` reads as NaN."""
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise CannotCompareError(f"{source} is not valid JSON ({error})") from None
    if not isinstance(raw, dict):
        raise CannotCompareError(f"{source} must hold a JSON object of metrics, not {type(raw).__name__}")
    metrics: dict[str, float] = {}
    for name, value in raw.items():
        if value is None:
            value = math.nan
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CannotCompareError(f"{source}: metric {name!r} is {value!r}, not a number")
        metrics[name] = value
    return metrics


def read_metrics_file(path: Path) -> dict[str, float]:
    """The metrics in ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise CannotCompareError(f"cannot read {path}: {error.strerror or error}") from None
    return parse_metrics(text, str(path))


def read_baseline(baseline: str, metrics: Path) -> tuple[str, dict[str, float]]:
    """``(label, metrics)`` of the baseline: the file ``baseline``, else ``metrics`` at revision ``baseline``."""
    if Path(baseline).is_file():
        return baseline, read_metrics_file(Path(baseline))
    label, text = committed_file(baseline, metrics)
    return label, parse_metrics(text, label)


def committed_file(revision: str, path: Path) -> tuple[str, str]:
    """``(label, text)`` of ``path`` as committed at ``revision`` in the git repository holding it."""
    folder = Path(path).resolve().parent
    top = Path(_git(["rev-parse", "--show-toplevel"], folder,
                    f"{path} is not inside a git repository; pass --baseline FILE").strip()).resolve()
    relative = Path(path).resolve().relative_to(top).as_posix()
    _git(["rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], top,
         f"--baseline {revision!r} is neither a metrics file nor a git revision of {top}")
    label = f"{revision}:{relative}"
    text = _git(["show", label], top, f"no baseline: {relative} is not committed at {revision} "
                                      "(commit one, or pass --baseline FILE)")
    return label, text


def _git(args: Sequence[str], cwd: Path, failure: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as error:
        raise CannotCompareError(f"cannot run git ({error.strerror or error}); pass --baseline FILE") from None
    if done.returncode != 0:
        raise CannotCompareError(failure)
    return done.stdout


def _number(value: float | None, sign: str = "") -> str:
    if value is None:
        return ABSENT
    return format(value, f"{sign}.6g" if math.isfinite(value) else "")


def _allowed(tolerance: Tolerance | None) -> str:
    if tolerance is None:
        return ""
    return f"{'drop' if tolerance.higher_is_better else 'rise'} <= {tolerance.tolerance:g}"


def format_table(rows: Sequence[Row]) -> str:
    """The rows as a GitHub-flavoured Markdown table, numbers right-aligned."""
    lines = ["| metric | baseline | new | delta | allowed | verdict |",
             "|:--|--:|--:|--:|:--|:--|"]
    lines += [
        f"| {row.metric} | {_number(row.baseline)} | {_number(row.new)} | {_number(row.delta, '+')} "
        f"| {_allowed(row.tolerance)} | {row.verdict} |"
        for row in rows
    ]
    return "\n".join(lines)


def failure_summary(rows: Sequence[Row]) -> str:
    """The failing rows in one line, or an empty string when the gate passes."""
    return ", ".join(f"{row.metric} {row.verdict}" for row in rows if row.failed)


def format_report(rows: Sequence[Row], new_label: str, baseline_label: str) -> str:
    """Heading, table and outcome, ready for a terminal or ``$GITHUB_STEP_SUMMARY``."""
    gated = sum(row.tolerance is not None for row in rows)
    failures = failure_summary(rows)
    if failures:
        outcome = f"**Gate failed:** {failures}."
    elif gated:
        outcome = f"**Gate passed:** {gated} gated metric(s) within tolerance."
    else:
        outcome = "**Nothing gated:** params `check.tolerances` is empty."
    return f"### Metrics gate: `{new_label}` vs `{baseline_label}`\n\n{format_table(rows)}\n\n{outcome}\n"


def append_summary(path: Path, report: str) -> None:
    """Append ``report`` to ``path`` (GitHub renders ``$GITHUB_STEP_SUMMARY`` as Markdown)."""
    try:
        with open(path, "a", encoding="utf-8") as stream:
            stream.write(report + "\n")
    except OSError as error:
        raise PipelineError(f"cannot append the table to {path}: {error.strerror or error}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline check [--metrics FILE] [--baseline FILE|REV] [--summary FILE]``."""
    parser = stage_parser("check", "Fail when metrics regress against a baseline beyond check.tolerances.")
    parser.add_argument("--metrics", type=Path, default=METRICS_FILE,
                        help=f"freshly computed metrics (default: {METRICS_FILE})")
    parser.add_argument("--baseline", default=DEFAULT_BASELINE,
                        help="a metrics file, or a git revision whose committed --metrics file is the "
                             f"baseline (default: {DEFAULT_BASELINE})")
    parser.add_argument("--summary", type=Path, help="also append the table here, e.g. $GITHUB_STEP_SUMMARY")

    def body(args: argparse.Namespace) -> None:
        tolerances = load_params(args.params).check.tolerances
        new = read_metrics_file(args.metrics)
        baseline_label, baseline = read_baseline(args.baseline, args.metrics)
        rows = compare_metrics(baseline, new, tolerances)
        report = format_report(rows, str(args.metrics), baseline_label)
        print(report)
        if args.summary:
            append_summary(args.summary, report)
        if any(row.failed for row in rows):
            raise RegressionError(f"gate failed against {baseline_label}: {failure_summary(rows)}")

    return run_stage("check", body, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
