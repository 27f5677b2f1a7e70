"""Stage ``train``: fit the VAE on the prepared data and record the run in MLflow.

Params are validated before Keras and its backend (``train.backend``: TensorFlow or JAX) are imported,
so a bad value fails before any work starts.
"""

import argparse
import csv
import io
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core import atomic_files
from pipeline.core.backend import select_backend
from pipeline.core.cli import add_model_paths, progress_bar, run_stage, stage_parser
from pipeline.core.errors import PipelineError
from pipeline.core.metrics import EpochLogs
from pipeline.core.model_kind import model_kind
from pipeline.core.params import Params, load_params
from pipeline.core.paths import CHECKPOINT_DIR, TRAIN_HISTORY_FILE
from pipeline.data.splits import load_split

if TYPE_CHECKING:
    import numpy as np

    from pipeline.model.trained_vae import TrainedVae

INPUT_EXAMPLE_ROWS = 5


def validation_split(prepared: Path) -> str:
    """The held-out split watched each epoch: ``val`` when prepare made one, else ``test`` (as the notebook)."""
    return "val" if (prepared / "val.npz").exists() else "test"


def history_csv(history: Sequence[EpochLogs]) -> str:
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


def example_inputs(parts: "TrainedVae", images: "np.ndarray", labels: "np.ndarray") -> dict[str, "np.ndarray"]:
    """The first training rows as the logged models' input example, by encoder input name: ``images``, and
    for the conditional VAE their one-hot ``labels``."""
    rows = slice(0, INPUT_EXAMPLE_ROWS)
    arrays = parts.model_inputs(images[rows], labels[rows] if parts.conditional else None)
    listed = arrays if isinstance(arrays, list) else [arrays]
    return {tensor.name: array for tensor, array in zip(parts.encoder.inputs, listed, strict=True)}


def summary_line(history: Sequence[EpochLogs], run_id: str) -> str:
    """What the stage achieved, in one line: epochs, final losses, speed and the MLflow run."""
    last = history[-1]
    seconds = sum(logs["seconds"] for logs in history) / len(history)
    return (f"train: {len(history)} epochs, loss {last['loss']:.1f}, val_neg_elbo {last['val_neg_elbo']:.1f}, "
            f"{seconds:.1f} s/epoch, MLflow run {run_id[:8]}")


def train(params: Params, prepared: Path, model_file: Path, run_file: Path, history_file: Path,
          checkpoint_dir: Path = CHECKPOINT_DIR) -> tuple[list[EpochLogs], str]:
    """Train (resuming a matching checkpoint), then write the model, run reference and history atomically.

    Returns the per-epoch logs (resumed epochs included) and the MLflow run id. Keras runs on
    ``train.backend``; a disagreeing ``KERAS_BACKEND`` or a missing backend package fails first (``BackendError``).
    """
    select_backend(params.train.backend)
    split = validation_split(prepared)
    x_train, y_train = load_split(prepared, "train")
    x_val, y_val = load_split(prepared, split)
    conditional = params.model.conditional
    labels = {"train_labels": y_train, "val_labels": y_val} if conditional else {}

    from pipeline.tracking import logged_models, run_data, store  # MLflow loads here, after params and data are checked
    from pipeline.tracking.run_file import write_run_ref
    from pipeline.tracking.run_lifecycle import MODEL_KIND_TAG, training_run
    from pipeline.tracking.studies import StudyTrial, TrialPruned

    store.configure()  # an unreachable tracking server fails now, not after Keras' start-up
    trial = StudyTrial.from_environment()  # set only when a tune worker runs this training as a study's trial
    if trial and split != "val":
        raise PipelineError(f"trial {trial.number} of study {trial.study_name!r} would validate on the test set; "
                            "a study's trials need data.val_fraction > 0")
    from pipeline.model.checkpoints import EpochCheckpoint, fingerprint  # Keras and its backend load here
    from pipeline.model.trainer import TrainConfig, make_trainer

    config = TrainConfig.from_params(params, train_size=len(x_train))
    data = (x_train, y_train) if conditional else (x_train,)
    checkpoint = EpochCheckpoint(checkpoint_dir / "train.npz", fingerprint(asdict(config), *data))
    tags = {"dataset": params.data.dataset, "validation_split": split,
            MODEL_KIND_TAG: model_kind(config.num_classes), **(trial.tags() if trial else {})}
    logged_params = params.lineage("train")  # later stages log their own, so a run never shows stale ones
    with training_run(params.train.experiment, logged_params, tags) as run:
        if trial:
            trial.record_run(run.run_id)
        run_data.log_dataset(x_train, params.data.dataset, prepared / "train.npz", context="training")
        trainer = make_trainer(config)
        logged: set[int] = set()

        def on_epoch_end(epoch: int, logs: dict[str, float]) -> None:
            run_data.log_epoch(epoch, logs)
            logged.add(epoch)
            bar.update(epoch + 1 - bar.n)
            bar.set_postfix(loss=f"{logs['loss']:.1f}", val_neg_elbo=f"{logs['val_neg_elbo']:.1f}")
            if trial:  # the study's pruning hook: may stop the training here
                trial.report(epoch + 1, logs["val_neg_elbo"], last=epoch + 1 == config.epochs)

        try:
            with progress_bar(config.epochs, "train", "epoch") as bar:
                history = trainer.fit(x_train, x_val, on_epoch_end, checkpoint, **labels)
        except TrialPruned:
            checkpoint.remove()  # a pruned state is never resumed
            raise
        resumed = [epoch for epoch in range(len(history)) if epoch not in logged]
        for epoch in resumed:
            run_data.log_epoch(epoch, history[epoch])
        if resumed:
            run_data.set_tag("resumed_after_epoch", str(len(resumed)))
        model_ids = logged_models.log_vae_models(trainer.parts.encoder, trainer.parts.decoder,
                                                 example_inputs(trainer.parts, x_train, y_train), step=len(history))
        with atomic_files.atomic_path(model_file) as temporary:
            trainer.vae.save(temporary)
        atomic_files.write_text(history_file, history_csv(history))
        write_run_ref(run_file, replace(run, models=model_ids))
    checkpoint.remove()
    return history, run.run_id


def _run(args: argparse.Namespace) -> None:
    history, run_id = train(load_params(args.params), args.prepared, args.model, args.run, args.history,
                            args.checkpoints)
    print(summary_line(history, run_id))


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
