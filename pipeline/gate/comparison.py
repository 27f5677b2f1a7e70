"""The gate's verdicts: each metric compared with its baseline under a tolerance, as a Markdown table.

A move in the bad direction larger than the tolerance fails; so does a metric missing from either
side or not finite. Metrics without a tolerance are shown for information only.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pipeline.core.params import Tolerance

Verdict = Literal["ok", "better", "REGRESSED", "missing", "not finite", "info"]
FAILING: frozenset[Verdict] = frozenset({"REGRESSED", "missing", "not finite"})
ABSENT = "n/a"


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
