"""Stage ``report``: figures of the trained VAE, a one-page HTML report and the model card, added to the MLflow run.

The page also shows the gate's deltas against the metrics committed at git HEAD, the per-class −ELBO as a bar
chart, and the model card (``pipeline.reporting.model_card``), which goes to each logged model too. Params are
validated and the inputs read before Keras (on ``train.backend``) is imported, so a bad value or a missing file
fails before any model work starts. Which figures each model kind gets, and how the files are rendered, live in
``pipeline.reporting.figure_sets`` and ``pipeline.reporting.report_files``.
"""

import argparse
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pipeline.core.backend import select_backend
from pipeline.core.cli import add_model_paths, run_stage, stage_parser
from pipeline.core.metrics import read_metrics_file
from pipeline.core.params import Params, load_params
from pipeline.core.paths import (
    CLASSIFIER_METRICS_FILE,
    DATA_STATS_FILE,
    METRICS_FILE,
    PER_CLASS_FILE,
    REPORTS_DIR,
    TRAIN_HISTORY_FILE,
)
from pipeline.data.splits import load_split
from pipeline.reporting.evidence import EvidenceSources, gather_evidence
from pipeline.reporting.report_files import MODEL_CARD_FILE, ReportError, write_report


def read_history(path: Path) -> pd.DataFrame:
    """The per-epoch CSV written by the train stage."""
    try:
        history = pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise ReportError(f"cannot read the training history {path}: {error}") from None
    missing = {"epoch", "loss", "neg_elbo", "kl_loss"} - set(history.columns)
    if missing or history.empty:
        raise ReportError(f"{path}: expected per-epoch rows with columns epoch, loss, neg_elbo, kl_loss "
                          f"(missing {sorted(missing)})")
    return history


def report(params: Params, prepared: Path, model_file: Path, run_file: Path, metrics_file: Path,
           history_file: Path, out: Path, sources: EvidenceSources | None = None) -> list[Path]:
    """The stage: read every input, draw, write, then add the files to the training run and the card to its
    logged models.

    Keras runs on ``train.backend`` (``pipeline.core.backend``), as it did in the train stage."""
    select_backend(params.train.backend)
    history = read_history(history_file)
    metrics = read_metrics_file(metrics_file, ReportError)
    x_test, y_test = load_split(prepared, "test")
    from pipeline.tracking import logged_models  # MLflow loads here, after params and inputs are checked
    from pipeline.tracking.run_data import log_results
    from pipeline.tracking.run_file import open_training_run

    ref = open_training_run(run_file)
    from pipeline.model.trained_vae import load_trained_vae  # Keras loads here, once the run is known

    vae = load_trained_vae(model_file)
    evidence = gather_evidence(params, sources or EvidenceSources(), ref, metrics_file, metrics, vae.num_classes,
                               vae.latent_dim, len(x_test))
    written = write_report(params, vae, x_test, y_test, history, metrics, ref.run_id, out, evidence)
    log_results(ref, {}, artifacts=written, settings=params.section("report"))
    if evidence.model_card:
        logged_models.attach_file(ref.models, out / MODEL_CARD_FILE)
    return written


def _run(args: argparse.Namespace) -> None:
    sources = EvidenceSources(args.per_class, args.classifier_metrics, args.data_stats, args.lock)
    written = report(load_params(args.params), args.prepared, args.model, args.run, args.metrics, args.history,
                     args.out, sources)
    pages = ", ".join(str(path) for path in written if path.suffix == ".html")
    print(f"report: {pages} ({len(written)} files)")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline report [options]``: parse ``argv``, run, return the exit code (0, 1, or 130)."""
    parser = stage_parser("report", __doc__.splitlines()[0])
    add_model_paths(parser)
    parser.add_argument("--metrics", type=Path, default=METRICS_FILE, help="metrics.json from evaluate")
    parser.add_argument("--history", type=Path, default=TRAIN_HISTORY_FILE, help="per-epoch CSV from train")
    parser.add_argument("--out", type=Path, default=REPORTS_DIR,
                        help="folder for the PNGs, explorer.html, index.html and model_card.md")
    parser.add_argument("--per-class", type=Path, default=PER_CLASS_FILE, help="per-class CSV from evaluate")
    parser.add_argument("--classifier-metrics", type=Path, default=CLASSIFIER_METRICS_FILE,
                        help="the classifier stage's test accuracy, for the model card")
    parser.add_argument("--data-stats", type=Path, default=DATA_STATS_FILE, help="prepare's data statistics")
    parser.add_argument("--lock", type=Path, default=Path("dvc.lock"),
                        help="DVC's record of each stage's digests and params, for the model card")
    return run_stage("report", _run, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
