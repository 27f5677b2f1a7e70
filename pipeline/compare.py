"""``python -m pipeline compare``: the tracked training runs of an experiment, side by side.

One row per run in the store ``store.configure`` points at: its name (the DVC experiment
when ``dvc exp`` ran it), short id, status and start time, the params that differ between runs
(all of them with ``--all-params``), then the test metrics and the last epoch's losses.

The unconditional VAE's metrics estimate −log p(x), the conditional VAE's −log p(x | y) (the label is
given), so the two are never ranked together: the table has one group per model kind (the run's
``model.kind`` tag, ``pipeline.core.model_kind``; runs without it are the VAE), each under a heading
that names its likelihood, and within a group the best test ``neg_elbo`` comes first; runs without
one come last, newest first.
"""

import argparse
from collections.abc import Sequence

import pandas as pd

from pipeline.core.cli import run_stage, stage_parser
from pipeline.core.model_kind import LIKELIHOOD, NAMES, RUN_TAG, VAE
from pipeline.core.params import load_params
from pipeline.core.tables import Render, add_table_options, show_table

KEY_METRICS = (
    "test_neg_elbo", "test_nll_is", "test_reconstruction_loss", "test_kl_loss", "active_units",
    "loss", "val_neg_elbo",
)
SORT_METRIC = "test_neg_elbo"
SHORT_ID = 8
KIND = "kind"


def runs_table(runs: pd.DataFrame, all_params: bool = False) -> pd.DataFrame:
    """MLflow's search result reduced to the columns worth comparing: grouped by model ``kind`` (``vae``
    first), sorted by ``test_neg_elbo`` within each group."""
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
                KIND: _kinds(runs),
                "start_time": runs["start_time"].dt.strftime("%Y-%m-%d %H:%M:%S"),
            }),
            runs[params].rename(columns=lambda column: column.removeprefix("params.")),
            runs[metrics].rename(columns=lambda column: column.removeprefix("metrics.")),
        ],
        axis=1,
    )
    order = [KIND, SORT_METRIC] if SORT_METRIC in table.columns else [KIND]
    table = table.sort_values(order, na_position="last", kind="stable", key=_kind_rank)
    return table.reset_index(drop=True)


def _kinds(runs: pd.DataFrame) -> pd.Series:
    """Each run's ``model.kind`` tag; runs logged before the tag existed are the unconditional VAE."""
    return runs.get(f"tags.{RUN_TAG}", pd.Series(pd.NA, index=runs.index, dtype="object")).fillna(VAE)


def _kind_rank(column: pd.Series) -> pd.Series:
    """Known kinds in ``LIKELIHOOD`` order, unknown ones after them; other columns sort as they are."""
    if column.name != KIND:
        return column
    order = list(LIKELIHOOD)
    return column.map(lambda kind: order.index(kind) if kind in order else len(order))


def kind_heading(kind: str) -> str:
    """What a group's numbers mean: ``unconditional VAE (kind vae): test metrics of -log p(x), nats per image``."""
    if kind not in LIKELIHOOD:
        return f"model kind {kind!r} (unknown): its test metrics are ranked on their own"
    return f"{NAMES[kind]} (kind {kind}): test metrics of -log {LIKELIHOOD[kind]}, nats per image"


def mixed_kinds_note(table: pd.DataFrame) -> str:
    """``""`` for runs of one kind, else a sentence saying why the groups are not ranked together."""
    kinds = list(dict.fromkeys(table[KIND]))
    if len(kinds) < 2:
        return ""
    return (f"note: {len(kinds)} model kinds ({', '.join(kinds)}): their likelihoods differ in meaning "
            "(-log p(x) against -log p(x|y), which is given the label), so each kind is ranked on its own; "
            "compare numbers within a group only")


def grouped_text(table: pd.DataFrame, render: Render, heading: str = "") -> str:
    """Each kind's rows rendered by ``render`` under its heading (prefixed by ``heading``), the note first."""
    note = mixed_kinds_note(table)
    blocks = [note] if note else []
    for kind, group in table.groupby(KIND, sort=False):
        blocks.append(f"{heading}{kind_heading(str(kind))}\n\n{render(group)}")
    return "\n\n".join(blocks) + "\n"


def _run_names(runs: pd.DataFrame) -> pd.Series:
    """The DVC experiment tag where there is one, else MLflow's run name."""
    names = runs.get("tags.mlflow.runName", pd.Series(pd.NA, index=runs.index, dtype="object"))
    if "tags.dvc.experiment" in runs.columns:
        names = runs["tags.dvc.experiment"].fillna(names)
    return names


def _run(args: argparse.Namespace) -> None:
    experiment = args.experiment or load_params(args.params).train.experiment
    from pipeline.tracking.run_search import search_runs  # MLflow loads here, not for --help

    show_table(runs_table(search_runs(experiment), all_params=args.all_params), args.csv, args.markdown,
               layout=grouped_text)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline compare [options]``: parse ``argv``, run, return the exit code (0, 1, or 130)."""
    parser = stage_parser("compare", "List the tracked MLflow runs of an experiment side by side.")
    parser.add_argument("--experiment", help="MLflow experiment (default: params train.experiment)")
    add_table_options(parser)
    parser.add_argument("--all-params", action="store_true", help="show every param, not only those that differ")
    return run_stage("compare", _run, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
