"""The gate's verdicts: each metric compared with its baseline under a tolerance, as a Markdown table.

A move in the bad direction larger than the tolerance fails; so does a metric missing or not finite
on either side (there is nothing to compare), with the side named. Metrics without a tolerance are shown
for information only.
"""

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, cast

from pipeline.core.errors import clipped
from pipeline.core.param_sections import Tolerance
from pipeline.gate import markdown

Verdict = Literal[
    "ok", "better", "REGRESSED", "info",
    "baseline missing", "new missing", "baseline and new missing",
    "baseline not finite", "new not finite", "baseline and new not finite",
]
PASSING: frozenset[Verdict] = frozenset({"ok", "better", "info"})
ABSENT = "n/a"
"""What the gate's tables show for a value one side lacks, as ``dvc params diff`` and ``dvc metrics diff`` do."""


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
        return self.verdict not in PASSING


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
    """How one metric fares; a move of exactly the tolerance still passes.

    A gated metric missing or not finite (NaN, ±infinity; ``null`` reads as NaN) on either side cannot be
    compared, so it fails, and the verdict names the side.
    """
    if tolerance is None:
        return "info"
    if baseline is None or new is None:
        return _sides(baseline is None, new is None, "missing")
    if not (math.isfinite(baseline) and math.isfinite(new)):
        return _sides(not math.isfinite(baseline), not math.isfinite(new), "not finite")
    worsening = baseline - new if tolerance.higher_is_better else new - baseline
    if worsening > tolerance.tolerance and not math.isclose(worsening, tolerance.tolerance):
        return "REGRESSED"
    return "better" if worsening < 0 else "ok"


def _sides(baseline_bad: bool, new_bad: bool, problem: str) -> Verdict:
    sides = " and ".join(side for side, bad in (("baseline", baseline_bad), ("new", new_bad)) if bad)
    return cast(Verdict, f"{sides} {problem}")


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
        f"| {markdown.text(row.metric)} | {_number(row.baseline)} | {_number(row.new)} | {_number(row.delta, '+')} "
        f"| {_allowed(row.tolerance)} | {row.verdict} |"
        for row in rows
    ]
    return "\n".join(lines)


def failure_summary(rows: Sequence[Row], shown: Callable[[str], str] = clipped) -> str:
    """The failing rows in one line, each metric name as ``shown`` writes it; empty when the gate passes."""
    return ", ".join(f"{shown(row.metric)} {row.verdict}" for row in rows if row.failed)


def format_report(rows: Sequence[Row], new_label: str, baseline_label: str, note: str = "") -> str:
    """Heading, ``note`` (a Markdown paragraph, if any), table and outcome, ready for a terminal or
    ``$GITHUB_STEP_SUMMARY``."""
    gated = sum(row.tolerance is not None for row in rows)
    failures = failure_summary(rows, markdown.text)
    if failures:
        outcome = f"**Gate failed:** {failures}."
    elif gated:
        outcome = f"**Gate passed:** {gated} gated metric(s) within tolerance."
    else:
        outcome = "**Nothing gated:** params `check.tolerances` is empty."
    heading = f"### Metrics gate: {markdown.code(new_label)} vs {markdown.code(baseline_label)}\n\n"
    heading += f"{note}\n\n" if note else ""
    return f"{heading}{format_table(rows)}\n\n{outcome}\n"
