"""``python -m pipeline check``: the regression gate on the evaluate stage's metrics.

``dvc metrics diff`` shows changes but always exits 0; this gate fails. It compares the working
tree's metrics with a baseline (by default the copy committed at git ``HEAD``) under params
``check.tolerances``, prints a Markdown table and the params that differ from the baseline's (as
``dvc params diff`` would), and exits 1 when a gated metric moved in its bad
direction by more than its tolerance, or is missing or not finite on either side (the verdict names
the side). Metrics without a tolerance are shown as information only.

The metrics of the unconditional VAE (−log p(x)) and of the conditional one (−log p(x | y)) share
their names but not their meaning, so the gate first compares the two model kinds
(``pipeline.core.model_kind``) and refuses to go on when they differ, unless told to with
``--allow-model-change``; the table's heading then says so.

With ``--promote``, a passing gate also registers the training run's encoder and decoder (from
``models/run.json``) in the MLflow Model Registry under params ``check.registered_models`` and moves
their alias ``champion``; a failing gate registers and moves nothing, and so does a run whose model
kind (its ``model.kind`` tag) differs from that of the version ``champion`` names now.
"""

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core.cli import run_stage, stage_parser
from pipeline.core.errors import PipelineError
from pipeline.core.metrics import read_metrics_file
from pipeline.core.model_kind import NAMES
from pipeline.core.param_sections import RegisteredModels
from pipeline.core.params import load_params
from pipeline.core.paths import METRICS_FILE, MODEL_KIND_FILE, RUN_FILE
from pipeline.gate.baseline import (
    CannotCompareError,
    baseline_model_kind,
    commit_of,
    read_baseline,
    read_model_kind,
)
from pipeline.gate.comparison import Row, compare_metrics, failure_summary, format_report
from pipeline.gate.params_diff import changed_summary, compare_params, format_params_diff
from pipeline.gate.summary import RunLink, Side, pull_request_report

if TYPE_CHECKING:
    from pipeline.tracking.run_file import RunRef

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


def model_change(args: argparse.Namespace) -> str:
    """``""`` when the baseline and the new metrics come from one model kind, else a sentence saying which.

    Raises ``CannotCompareError`` on a change unless ``--allow-model-change`` was passed.
    """
    model_kind = args.model_kind or Path(args.metrics).with_name(MODEL_KIND_FILE.name)
    before = baseline_model_kind(args.baseline, model_kind, args.baseline_model_kind)
    after = read_model_kind(model_kind)
    if before == after:
        return ""
    change = f"the baseline is from the {NAMES[before]}, the new metrics from the {NAMES[after]}"
    if not args.allow_model_change:
        raise CannotCompareError(f"{change}, whose likelihoods differ; compare runs of one model kind "
                                 "or pass --allow-model-change")
    return change


def _run(args: argparse.Namespace) -> None:
    check = load_params(args.params).check
    run = _training_run(args.run, check.registered_models) if args.promote else None  # fail before any verdict
    tolerances = check.tolerances
    new = read_metrics_file(args.metrics, CannotCompareError)
    baseline_label, baseline = read_baseline(args.baseline, args.metrics)
    change = model_change(args)
    rows = compare_metrics(baseline, new, tolerances)
    params = compare_params(args.baseline, args.params, args.baseline_params)
    note = f"**Models differ:** {change}." if change else ""
    report = f"{format_report(rows, str(args.metrics), baseline_label, note)}\n{format_params_diff(params)}"
    print(report)
    if args.summary:
        new_side = Side(str(args.metrics), RunLink.from_run_file(args.run), args.figures_url)
        old_run = RunLink.from_run_file(args.baseline_run) if args.baseline_run else None
        figures = sorted(path.name for path in Path(args.metrics).parent.glob("*.png"))
        append_summary(args.summary, pull_request_report(rows, params, baseline, new, Side(baseline_label, old_run,
                                                         args.baseline_figures_url), new_side, figures, change))
    if any(row.failed for row in rows):
        raise RegressionError(f"gate failed against {baseline_label}: {failure_summary(rows)}"
                              f"{changed_summary(params)}")
    if run is not None and change:
        raise PipelineError(f"not promoting: {change}, so the registered models would change their inputs; "
                            "register this kind under other names (check.registered_models)")
    if run is not None:
        commit = None if Path(args.baseline).is_file() else commit_of(args.baseline, args.metrics)
        _promote(run, rows, baseline_label, commit, report, check.registered_models)


def _training_run(run_file: Path, names: RegisteredModels) -> "RunRef":
    """The run to promote, checked to exist, to hold a logged model for each registered name, and to be of the
    kind each name's ``champion`` is."""
    from pipeline.tracking import registry  # MLflow loads only when promoting
    from pipeline.tracking.run_file import open_training_run

    run = open_training_run(run_file)
    registry.require_parts(run.models, names.model_dump(), run.run_id)
    registry.require_champion_kind(names.model_dump(), run.run_id)
    return run


def _promote(run: "RunRef", rows: Sequence[Row], baseline: str, commit: str | None, report: str,
             names: RegisteredModels) -> None:
    """Register the run's encoder and decoder and move ``champion``, tagged with the gate's baseline and deltas."""
    from pipeline.tracking import registry

    deltas = {row.metric: row.delta for row in rows if row.tolerance is not None}
    tags = registry.promotion_tags(baseline, deltas, run.run_id, commit)
    for promotion in registry.promote(run.models, names.model_dump(), run.run_id, tags, report):
        again = " (already registered)" if promotion.reused else ""
        print(f"promoted: {promotion.uri} -> version {promotion.version}{again}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline check [options]``: parse ``argv``, run, return the exit code (0, 1, or 130)."""
    parser = stage_parser("check", "Fail when metrics regress against a baseline beyond check.tolerances.")
    parser.add_argument("--metrics", type=Path, default=METRICS_FILE,
                        help=f"freshly computed metrics (default: {METRICS_FILE})")
    parser.add_argument("--baseline", default=DEFAULT_BASELINE,
                        help="a metrics file, or a git revision whose committed --metrics file is the "
                             f"baseline (default: {DEFAULT_BASELINE})")
    parser.add_argument("--baseline-params", type=Path,
                        help="the baseline's params file, to list the params that changed when --baseline is a "
                             "file (with a revision, the params file committed there is used)")
    parser.add_argument("--summary", type=Path,
                        help="also append the pull-request report (Markdown: verdict, params, every metric, sample "
                             "metrics, figures, MLflow runs) here, e.g. $GITHUB_STEP_SUMMARY; see docs/evidence.md")
    parser.add_argument("--figures-url",
                        help="with --summary: the URL folder where the new side's PNGs (those beside --metrics) are "
                             "published, so the report can show them")
    parser.add_argument("--baseline-figures-url", help="with --summary: the same for the baseline's PNGs")
    parser.add_argument("--baseline-run", type=Path,
                        help="with --summary: the baseline's run.json, to link its MLflow run")
    parser.add_argument("--model-kind", type=Path,
                        help=f"which model produced --metrics; at a git --baseline, its committed copy tells the "
                             f"baseline's (default: {MODEL_KIND_FILE.name} beside --metrics; absent means the "
                             "unconditional VAE)")
    parser.add_argument("--baseline-model-kind", type=Path,
                        help=f"which model produced a --baseline FILE (default: the {MODEL_KIND_FILE.name} beside "
                             "it; absent means the unconditional VAE)")
    parser.add_argument("--allow-model-change", action="store_true",
                        help="compare a conditional with an unconditional VAE anyway, saying so in the table")
    parser.add_argument("--promote", action="store_true",
                        help="when the gate passes, register the run's encoder and decoder in the MLflow Model "
                             "Registry (params check.registered_models) and move their alias champion")
    parser.add_argument("--run", type=Path, default=RUN_FILE,
                        help=f"the JSON naming the training run, promoted with --promote and linked by --summary "
                             f"(default: {RUN_FILE})")
    return run_stage("check", _run, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
