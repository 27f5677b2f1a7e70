"""``python -m pipeline check``: the regression gate on the evaluate stage's metrics.

``dvc metrics diff`` shows changes but always exits 0; this gate fails. It compares the working
tree's metrics with a baseline (by default the copy committed at git ``HEAD``) under params
``check.tolerances``, prints a Markdown table, and exits 1 when a gated metric moved in its bad
direction by more than its tolerance, is missing from either side, or is not finite in the new
file. Metrics without a tolerance are shown as information only.
"""

import argparse
from collections.abc import Sequence
from pathlib import Path

from pipeline.core.cli import run_stage, stage_parser
from pipeline.core.errors import PipelineError
from pipeline.core.params import load_params
from pipeline.core.paths import METRICS_FILE
from pipeline.gate.baseline import read_baseline, read_metrics_file
from pipeline.gate.comparison import compare_metrics, failure_summary, format_report

DEFAULT_BASELINE = "HEAD"


class RegressionError(PipelineError):
    """The comparison ran and at least one gated metric failed it."""


def append_summary(path: Path, report: str) -> None:
    """Append ``report`` to ``path`` (GitHub renders ``$GITHUB_STEP_SUMMARY`` as Markdown)."""
    try:
        with open(path, "a", encoding="utf-8") as stream:
            stream.write(report + "\n")
    except OSError as error:
        raise PipelineError(f"cannot append the table to {path}: {error.strerror or error}") from None


def _run(args: argparse.Namespace) -> None:
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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline check [options]``: parse ``argv``, run, return the exit code (0, 1, or 130)."""
    parser = stage_parser("check", "Fail when metrics regress against a baseline beyond check.tolerances.")
    parser.add_argument("--metrics", type=Path, default=METRICS_FILE,
                        help=f"freshly computed metrics (default: {METRICS_FILE})")
    parser.add_argument("--baseline", default=DEFAULT_BASELINE,
                        help="a metrics file, or a git revision whose committed --metrics file is the "
                             f"baseline (default: {DEFAULT_BASELINE})")
    parser.add_argument("--summary", type=Path, help="also append the table here, e.g. $GITHUB_STEP_SUMMARY")
    return run_stage("check", _run, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
