"""Stage ``train``: fit the VAE on the prepared data and record the run in MLflow.

Params are validated before TensorFlow is imported, so a bad value fails before any work starts.
"""

import argparse
import csv
import io
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

from pipeline.core import atomic_files
from pipeline.core.cli import add_model_paths, run_stage, show_progress, stage_parser
from pipeline.core.params import Params, load_params
from pipeline.core.paths import CHECKPOINT_DIR, TRAIN_HISTORY_FILE
from pipeline.data.splits import load_split
from pipeline.tracking import logged_models, runs

INPUT_EXAMPLE_ROWS = 5


def validation_split(prepared: Path) -> str:
    """The held-out split watched each epoch: ``val`` when prepare made one, else ``test`` (as the notebook)."""
    return "val" if (prepared / "val.npz").exists() else "test"


def history_csv(history: Sequence[dict[str, float]]) -> str:
    """The per-epoch losses as CSV with an ``epoch`` column counted from 1.

    Wall-clock ``seconds`` stay in MLflow only: the committed CSV changes only when results do.
    """
    columns = [name for name in history[0] if name != "seconds"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["epoch", *columns], lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for epoch, logs in enumerate(history, start=1):
        writer.writerow({"epoch": epoch, **{key: f"{logs[key]:.6f}" for key in columns}})
    return buffer.getvalue()


def _progress(epoch: int, epochs: int, logs: dict[str, float]) -> None:
    if show_progress():
        print(f"epoch {epoch + 1}/{epochs}  loss {logs['loss']:.2f}  val_neg_elbo {logs['val_neg_elbo']:.2f}"
              f"  {logs['seconds']:.1f}s", file=sys.stderr)


def train(params: Params, prepared: Path, model_file: Path, run_file: Path, history_file: Path,
          checkpoint_dir: Path = CHECKPOINT_DIR) -> None:
    """Train (resuming a matching checkpoint), then write the model, run reference and history atomically."""
    split = validation_split(prepared)
    x_train, _ = load_split(prepared, "train")
    x_val, _ = load_split(prepared, split)

    # TensorFlow loads here (pipeline.model), after params and data are checked.
    from pipeline.model.checkpoints import EpochCheckpoint, fingerprint
    from pipeline.model.loading import TrainedVae
    from pipeline.model.trainer import TrainConfig, VaeTrainer

    config = TrainConfig.from_params(params)
    checkpoint = EpochCheckpoint(checkpoint_dir / "train.npz", fingerprint(asdict(config), x_train))
    tags = {"dataset": params.data.dataset, "validation_split": split}
    logged_params = params.lineage("train")  # later stages log their own, so a run never shows stale ones
    with runs.training_run(params.train.experiment, logged_params, tags) as run:
        runs.log_dataset(x_train, params.data.dataset, prepared / "train.npz", context="training")
        trainer = VaeTrainer(config)
        logged: set[int] = set()

        def on_epoch_end(epoch: int, logs: dict[str, float]) -> None:
            runs.log_epoch(epoch, logs)
            logged.add(epoch)
            _progress(epoch, config.epochs, logs)

        history = trainer.fit(x_train, x_val, on_epoch_end, checkpoint)
        resumed = [epoch for epoch in range(len(history)) if epoch not in logged]
        for epoch in resumed:
            runs.log_epoch(epoch, history[epoch])
        if resumed:
            runs.set_tag("resumed_after_epoch", str(len(resumed)))
        trained = TrainedVae(trainer.vae)
        model_ids = logged_models.log_vae_models(trained.encoder, trained.decoder,
                                                 {"images": x_train[:INPUT_EXAMPLE_ROWS]}, step=len(history))
        with atomic_files.atomic_path(model_file) as temporary:
            trainer.vae.save(temporary)
        atomic_files.write_text(history_file, history_csv(history))
        runs.write_run_ref(run_file, replace(run, models=model_ids))
    checkpoint.remove()


def _run(args: argparse.Namespace) -> None:
    train(load_params(args.params), args.prepared, args.model, args.run, args.history, args.checkpoints)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline train [options]``: parse ``argv``, run, return the exit code (0, 1, or 130)."""
    parser = stage_parser("train", __doc__.splitlines()[0])
    add_model_paths(parser)
    parser.add_argument("--history", type=Path, default=TRAIN_HISTORY_FILE, help="per-epoch CSV")
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINT_DIR,
                        help="per-epoch checkpoints, resumed after an interruption")
    return run_stage("train", _run, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
