"""Stage ``classifier``: train the convolutional classifier whose features score the VAE's samples.

It learns the prepared training split and is scored once on the test split; its weights are a DVC output
that evaluate depends on, so the sample metrics change when, and only when, the classifier does. It always
trains on TensorFlow, whatever ``train.backend`` says: it is the instrument that scores every run's samples, so a
JAX run is measured by the same classifier as a TensorFlow baseline. Params are validated before TensorFlow is
imported.
"""

import argparse
from collections.abc import Sequence
from pathlib import Path

from pipeline.core import atomic_files
from pipeline.core.backend import select_backend
from pipeline.core.cli import progress_bar, run_stage, stage_parser
from pipeline.core.params import Params, load_params
from pipeline.core.paths import CLASSIFIER_FILE, CLASSIFIER_METRICS_FILE, PREPARED_DIR
from pipeline.data.datasets import DATASETS
from pipeline.data.splits import load_split


def train_and_score(params: Params, prepared: Path, model_file: Path, metrics_file: Path) -> dict[str, float]:
    """Train on ``prepared``'s train split, score on its test split, write the model and metrics; return them.

    The metrics are ``test_accuracy`` (a share) and ``train_loss`` (the last epoch's mean cross-entropy, nats).
    """
    select_backend("tensorflow")
    x_train, y_train = load_split(prepared, "train")
    x_test, y_test = load_split(prepared, "test")
    num_classes = len(DATASETS[params.data.dataset].class_names)
    from pipeline.sample_quality.classifier import (  # TensorFlow loads here, after params and data
        ClassifierConfig,
        FeatureExtractor,
        train_classifier,
    )

    config = ClassifierConfig.from_params(params, num_classes)
    losses: list[float] = []

    def on_epoch_end(epoch: int, logs: dict[str, float]) -> None:
        losses.append(float(logs["loss"]))
        bar.update(1)

    with progress_bar(config.epochs, "classifier", "epoch") as bar:
        model = train_classifier(x_train, y_train, config, on_epoch_end)
    metrics = {"test_accuracy": FeatureExtractor(model).accuracy(x_test, y_test), "train_loss": losses[-1]}
    with atomic_files.atomic_path(model_file) as temporary:
        model.save(temporary)
    atomic_files.write_json(metrics_file, metrics)
    return metrics


def _run(args: argparse.Namespace) -> None:
    metrics = train_and_score(load_params(args.params), args.prepared, args.model, args.metrics)
    print(f"classifier: test accuracy {100 * metrics['test_accuracy']:.2f} % -> {args.model}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline classifier [options]``: parse ``argv``, run, return the exit code (0, 1, or 130)."""
    parser = stage_parser("classifier", __doc__.splitlines()[0])
    parser.add_argument("--prepared", type=Path, default=PREPARED_DIR, help="folder of the train/val/test .npz")
    parser.add_argument("--model", type=Path, default=CLASSIFIER_FILE, help="where to write the .keras classifier")
    parser.add_argument("--metrics", type=Path, default=CLASSIFIER_METRICS_FILE,
                        help="where to write its test accuracy (JSON)")
    return run_stage("classifier", _run, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
