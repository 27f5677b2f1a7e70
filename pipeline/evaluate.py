"""Stage ``evaluate``: test ELBO, importance-sampled −log p(x) and per-class scores, into the training run.

For the conditional VAE the same metrics score −log p(x | y), the label given; ``model.json``
beside the metrics says which (``pipeline.core.model_kind``). Params are validated, and the MLflow
run checked, before Keras and its backend (``train.backend``) are imported.
"""

import argparse
import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.core import atomic_files
from pipeline.core.backend import select_backend
from pipeline.core.cli import add_model_paths, progress_bar, run_stage, stage_parser
from pipeline.core.errors import PipelineError
from pipeline.core.model_kind import describe
from pipeline.core.params import Params, load_params
from pipeline.core.paths import METRICS_FILE, MODEL_KIND_FILE, PER_CLASS_FILE
from pipeline.data.datasets import DATASETS
from pipeline.data.splits import load_split

if TYPE_CHECKING:
    from pipeline.model.likelihood import ImageScores

FLOAT_TOLERANCE = 1e-5
"""Relative slack for float rounding when comparing −log p(x) with the negative ELBO."""
STANDARD_ERRORS = 3.0
"""Monte Carlo slack: with few importance samples both estimates agree only in expectation."""


class MetricsError(PipelineError):
    """The metrics are not finite or contradict each other: a bug or a broken model, not a result."""


class EvaluateInputError(PipelineError):
    """The test split is empty or the model file is missing."""


def summarize(scores: "ImageScores", beta: float) -> dict[str, float]:
    """The test metrics, in nats per image unless named otherwise.

    ``test_mse`` is the mean squared error per pixel between each image and the decoder's mean
    output (the pixel probabilities) at z = z_mean, i.e. a deterministic reconstruction.
    """
    from pipeline.model.likelihood import active_units

    reconstruction, kl = float(np.mean(scores.reconstruction_loss)), float(np.mean(scores.kl_loss))
    return {
        "test_loss": reconstruction + beta * kl,
        "test_reconstruction_loss": reconstruction,
        "test_kl_loss": kl,
        "test_neg_elbo": float(np.mean(scores.neg_elbo)),
        "test_nll_is": float(np.mean(scores.nll_is)),
        "test_mse": float(np.mean(scores.squared_error)),
        "active_units": active_units(scores.z_mean),
    }


def check_metrics(metrics: dict[str, float], gap: np.ndarray) -> None:
    """Fail on non-finite metrics, or when −log p(x) exceeds the negative ELBO it must lower-bound.

    ``gap`` is the per-image ``neg_elbo − nll_is``; its mean may fall below zero by float rounding
    and by ``STANDARD_ERRORS`` of its Monte Carlo noise, which matters only for tiny ``is_samples``.
    """
    bad = sorted(name for name, value in metrics.items() if not math.isfinite(value))
    if bad:
        listed = ", ".join(f"{name}={metrics[name]}" for name in bad)
        raise MetricsError(f"non-finite test metrics: {listed}")
    noise = STANDARD_ERRORS * float(np.std(gap, ddof=1)) / math.sqrt(len(gap)) if len(gap) > 1 else 0.0
    slack = FLOAT_TOLERANCE * max(1.0, abs(metrics["test_neg_elbo"])) + noise
    if metrics["test_nll_is"] > metrics["test_neg_elbo"] + slack:
        raise MetricsError(
            f"test_nll_is {metrics['test_nll_is']:.4f} exceeds test_neg_elbo {metrics['test_neg_elbo']:.4f} "
            f"by more than {slack:.4f} nats: the importance-sampling bound is broken"
        )


def per_class_csv(neg_elbo: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> str:
    """One row per class present: ``class``, ``class_name``, ``count``, ``test_neg_elbo``."""
    if labels.size and int(labels.max()) >= len(class_names):
        raise MetricsError(
            f"test label {int(labels.max())} has no class name (the dataset has {len(class_names)})"
        )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["class", "class_name", "count", "test_neg_elbo"])
    for label in np.unique(labels):
        members = labels == label
        mean = float(np.mean(neg_elbo[members]))
        writer.writerow([int(label), class_names[label], int(members.sum()), f"{mean:.6f}"])
    return buffer.getvalue()


def evaluate(params: Params, prepared: Path, model_file: Path, run_file: Path, metrics_file: Path,
             per_class_file: Path, model_kind_file: Path = MODEL_KIND_FILE) -> dict[str, float]:
    """Score the test split, write the reports atomically, add them to the training run; return the metrics.

    A conditional model is given each test image's label; ``model_kind_file`` records which kind was scored.
    Keras runs on ``train.backend`` (``pipeline.core.backend``), as it did in the train stage.
    """
    select_backend(params.train.backend)
    x_test, y_test = load_split(prepared, "test")
    if len(x_test) == 0:
        raise EvaluateInputError(f"{prepared}: the test split is empty")
    if not model_file.is_file():
        raise EvaluateInputError(f"{model_file} not found; run the train stage first")
    from pipeline.tracking import runs  # MLflow loads here, after params and inputs are checked

    run = runs.open_training_run(run_file)

    from pipeline.model.likelihood import LikelihoodEstimator  # Keras loads here, after validation
    from pipeline.model.loading import load_trained_vae

    trained = load_trained_vae(model_file)
    settings = params.evaluate
    with progress_bar(len(x_test), "evaluate", "image") as bar:
        scores = LikelihoodEstimator(trained).score(
            x_test, settings.elbo_samples, settings.is_samples, settings.batch_size, settings.seed,
            labels=y_test if trained.conditional else None, on_batch=bar.update,
        )
    metrics = summarize(scores, params.train.beta)
    check_metrics(metrics, scores.neg_elbo - scores.nll_is)
    per_class = per_class_csv(scores.neg_elbo, y_test, DATASETS[params.data.dataset].class_names)
    # Everything that can fail has run: write the three outputs together.
    atomic_files.write_json(metrics_file, metrics)
    atomic_files.write_json(model_kind_file, describe(trained.num_classes))
    atomic_files.write_text(per_class_file, per_class)
    runs.log_results(run, metrics, artifacts=[per_class_file], settings=params.section("evaluate"))
    return metrics


def summary_line(metrics: dict[str, float], metrics_file: Path) -> str:
    """What the stage achieved, in one line: the two likelihood bounds, in nats per test image."""
    return (f"evaluate: test_neg_elbo {metrics['test_neg_elbo']:.2f}, test_nll_is {metrics['test_nll_is']:.2f} "
            f"nats -> {metrics_file}")


def _run(args: argparse.Namespace) -> None:
    metrics = evaluate(load_params(args.params), args.prepared, args.model, args.run, args.metrics,
                       args.per_class, args.model_kind)
    print(summary_line(metrics, args.metrics))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline evaluate [options]``: parse ``argv``, run, return the exit code (0, 1, or 130)."""
    parser = stage_parser("evaluate", __doc__.splitlines()[0])
    add_model_paths(parser)
    parser.add_argument("--metrics", type=Path, default=METRICS_FILE, help="where to write metrics.json")
    parser.add_argument("--per-class", type=Path, default=PER_CLASS_FILE, help="where to write per-class CSV")
    parser.add_argument("--model-kind", type=Path, default=MODEL_KIND_FILE,
                        help="where to write which model kind (vae, cvae) the metrics score")
    return run_stage("evaluate", _run, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
