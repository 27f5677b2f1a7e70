"""``python -m pipeline compare``: the tracked training runs of an experiment, side by side.

One row per run in the store ``store.configure`` points at: its name (the DVC experiment
when ``dvc exp`` ran it), short id, status and start time, the params that differ between runs
(all of them with ``--all-params``), then the test metrics and the last epoch's losses. The
best test ``neg_elbo`` comes first; runs without one come last, newest first.
"""

import argparse
from collections.abc import Sequence

import pandas as pd

from pipeline.core.cli import run_stage, stage_parser
from pipeline.core.params import load_params
from pipeline.core.tables import add_table_options, show_table

KEY_METRICS = (
    "test_neg_elbo", "test_nll_is", "test_reconstruction_loss", "test_kl_loss", "active_units",
    "loss", "val_neg_elbo",
)
SORT_METRIC = "test_neg_elbo"
SHORT_ID = 8


def runs_table(runs: pd.DataFrame, all_params: bool = False) -> pd.DataFrame:
    """MLflow's search result reduced to the columns worth comparing, sorted by ``test_neg_elbo``."""
    params = sorted(column for column in runs.columns if column.startswith("params."))
    if not all_params:
        params = [column for column in params if runs[column].nunique(dropna=False) > 1]
    metrics = [f"metrics.{name}" for name in KEY_METRICS if f"metrics.{name}" in runs.columns]
    table = pd.concat(
        [
            pd.DataFrame({
                "run": _run_names(runs),
                "run_id": runs["run_id"].str[:SHORT_ID],
                "status": runs["status"],
                "start_time": runs["start_time"].dt.strftime("%Y-%m-%d %H:%M:%S"),
            }),
            runs[params].rename(columns=lambda column: column.removeprefix("params.")),
            runs[metrics].rename(columns=lambda column: column.removeprefix("metrics.")),
        ],
        axis=1,
    )
    if SORT_METRIC in table.columns:
        table = table.sort_values(SORT_METRIC, na_position="last", kind="stable")
    return table.reset_index(drop=True)


def _run_names(runs: pd.DataFrame) -> pd.Series:
    """The DVC experiment tag where there is one, else MLflow's run name."""
    names = runs.get("tags.mlflow.runName", pd.Series(pd.NA, index=runs.index, dtype="object"))
    if "tags.dvc.experiment" in runs.columns:
        names = runs["tags.dvc.experiment"].fillna(names)
    return names


def _run(args: argparse.Namespace) -> None:
    experiment = args.experiment or load_params(args.params).train.experiment
    from pipeline.tracking.runs import search_runs  # MLflow loads here, not for --help

    show_table(runs_table(search_runs(experiment), all_params=args.all_params), args.csv, args.markdown)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline compare [options]``: parse ``argv``, run, return the exit code (0, 1, or 130)."""
    parser = stage_parser("compare", "List the tracked MLflow runs of an experiment side by side.")
    parser.add_argument("--experiment", help="MLflow experiment (default: params train.experiment)")
    add_table_options(parser)
    parser.add_argument("--all-params", action="store_true", help="show every param, not only those that differ")
    return run_stage("compare", _run, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
