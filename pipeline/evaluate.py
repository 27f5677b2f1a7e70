"""Stage ``evaluate``: test ELBO, importance-sampled −log p(x), per-class scores and sample quality, into the run.

For the conditional VAE the same metrics score −log p(x | y), the label given; ``model.json``
beside the metrics says which (``pipeline.core.model_kind``). The sample metrics (FID, precision, recall and,
for the conditional VAE, the label accuracy of its samples) read the classifier stage's features
(``pipeline.sample_quality``). Params are validated, and the MLflow run checked, before Keras and its backend
(``train.backend``) are imported.
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
from pipeline.core.errors import PipelineError, require_output
from pipeline.core.model_kind import describe
from pipeline.core.param_sections import EvaluateParams
from pipeline.core.params import Params, load_params
from pipeline.core.paths import CLASSIFIER_FILE, METRICS_FILE, MODEL_KIND_FILE, PER_CLASS_FILE
from pipeline.data.datasets import DATASETS
from pipeline.data.splits import load_split

if TYPE_CHECKING:
    from pipeline.model.likelihood import ImageScores
    from pipeline.model.trained_vae import TrainedVae
    from pipeline.sample_quality.classifier import FeatureExtractor

FLOAT_TOLERANCE = 1e-5
"""Relative slack for float rounding when comparing −log p(x) with the negative ELBO."""
STANDARD_ERRORS = 3.0
"""Monte Carlo slack: with few importance samples both estimates agree only in expectation."""
GAP_NATS_PER_LATENT_DIM = 2.5
"""The most that −ELBO may exceed −log p(x) by, per latent dimension, before evaluate calls the estimates broken.

The gap is KL(q(z|x) ‖ p(z|x)), which grows with the latent size: at 2 dimensions it is 1.35 nats in Davidson
et al. (2018: 137.08 vs 135.73) and 1.2–1.8 nats over our training seeds; at 50 dimensions Cremer et al. (2018)
measure about 5 nats on MNIST. 2.5 nats per dimension allows 5 nats at 2 dimensions, three times what the
seeds show, and far more at higher ones: it catches a broken estimator or an encoder far from the posterior (an
untrained one is some 30 nats off), not a slightly worse one.
"""


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


def check_metrics(metrics: dict[str, float], gap: np.ndarray, latent_dim: int) -> None:
    """Fail on non-finite metrics, when −log p(x) exceeds the negative ELBO it must lower-bound, or when it lies
    further below than ``GAP_NATS_PER_LATENT_DIM`` × ``latent_dim`` nats.

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
    allowed = GAP_NATS_PER_LATENT_DIM * latent_dim
    if metrics["test_neg_elbo"] - metrics["test_nll_is"] > allowed + slack:
        raise MetricsError(
            f"test_neg_elbo {metrics['test_neg_elbo']:.4f} exceeds test_nll_is {metrics['test_nll_is']:.4f} by "
            f"{metrics['test_neg_elbo'] - metrics['test_nll_is']:.4f} nats, more than the {allowed:g} nats a "
            f"{latent_dim}-dimensional latent space allows: the encoder's q(z|x) is far from the posterior, or an "
            "estimate is broken"
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


def sample_quality(settings: EvaluateParams, trained: "TrainedVae", extractor: "FeatureExtractor",
                   x_test: np.ndarray, y_test: np.ndarray, num_classes: int) -> dict[str, float]:
    """The sample metrics (``pipeline.sample_quality.scores``): ``settings.sample_count`` decoder means at
    z ~ N(0, I) against as many test images, for a conditional VAE each drawn for one test image's label.

    Raises ``EvaluateInputError`` when the classifier was trained on another number of classes than ``num_classes``.
    """
    from pipeline.sample_quality.scores import pick_test_images, prior_samples, sample_metrics

    if extractor.num_classes != num_classes:
        raise EvaluateInputError(f"the classifier tells {extractor.num_classes} classes apart, the dataset has "
                                 f"{num_classes}; rerun the classifier stage")
    picked = pick_test_images(settings.sample_count, len(x_test), settings.seed)
    labels = y_test[picked] if trained.conditional else None
    samples = prior_samples(trained.decode, len(picked), trained.latent_dim, settings.seed, labels)
    test_features, _ = extractor.read(x_test[picked])
    sample_features, sample_classes = extractor.read(samples)
    return sample_metrics(test_features, sample_features, settings.nearest_neighbors, settings.bootstrap_resamples,
                          settings.seed, sample_classes, labels)


def evaluate(params: Params, prepared: Path, model_file: Path, run_file: Path, metrics_file: Path,
             per_class_file: Path, model_kind_file: Path = MODEL_KIND_FILE,
             classifier_file: Path = CLASSIFIER_FILE) -> dict[str, float]:
    """Score the test split and the decoder's samples, write the reports atomically, add them to the training run;
    return the metrics.

    A conditional model is given each test image's label; ``model_kind_file`` records which kind was scored.
    Keras runs on ``train.backend`` (``pipeline.core.backend``), as it did in the train stage.
    """
    select_backend(params.train.backend)
    x_test, y_test = load_split(prepared, "test")
    if len(x_test) < params.evaluate.sample_count:
        raise EvaluateInputError(f"{prepared}: the test split has {len(x_test)} images, fewer than "
                                 f"evaluate.sample_count {params.evaluate.sample_count}")
    require_output(model_file, "train", EvaluateInputError)
    require_output(classifier_file, "classifier", EvaluateInputError)
    from pipeline.tracking.run_data import log_results  # MLflow loads here, after params and inputs are checked
    from pipeline.tracking.run_file import open_training_run

    run = open_training_run(run_file)

    from pipeline.model.likelihood import LikelihoodEstimator  # Keras loads here, after validation
    from pipeline.model.trained_vae import load_trained_vae
    from pipeline.sample_quality.classifier import load_classifier

    trained = load_trained_vae(model_file)
    extractor = load_classifier(classifier_file)
    settings = params.evaluate
    with progress_bar(len(x_test), "evaluate", "image") as bar:
        scores = LikelihoodEstimator(trained).score(
            x_test, settings.elbo_samples, settings.is_samples, settings.batch_size, settings.seed,
            labels=y_test if trained.conditional else None, on_batch=bar.update,
        )
    class_names = DATASETS[params.data.dataset].class_names
    metrics = summarize(scores, params.train.beta) | sample_quality(settings, trained, extractor, x_test, y_test,
                                                                    len(class_names))
    check_metrics(metrics, scores.neg_elbo - scores.nll_is, trained.latent_dim)
    per_class = per_class_csv(scores.neg_elbo, y_test, class_names)
    # Everything that can fail has run: write the three outputs together.
    atomic_files.write_json(metrics_file, metrics)
    atomic_files.write_json(model_kind_file, describe(trained.num_classes))
    atomic_files.write_text(per_class_file, per_class)
    log_results(run, metrics, artifacts=[per_class_file], settings=params.section("evaluate"))
    return metrics


def summary_line(metrics: dict[str, float], metrics_file: Path) -> str:
    """What the stage achieved, in one line: the two likelihood bounds, in nats per test image."""
    return (f"evaluate: test_neg_elbo {metrics['test_neg_elbo']:.2f}, test_nll_is {metrics['test_nll_is']:.2f} "
            f"nats, sample_fid {metrics['sample_fid']:.2f} -> {metrics_file}")


def _run(args: argparse.Namespace) -> None:
    metrics = evaluate(load_params(args.params), args.prepared, args.model, args.run, args.metrics,
                       args.per_class, args.model_kind, args.classifier)
    print(summary_line(metrics, args.metrics))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline evaluate [options]``: parse ``argv``, run, return the exit code (0, 1, or 130)."""
    parser = stage_parser("evaluate", __doc__.splitlines()[0])
    add_model_paths(parser)
    parser.add_argument("--classifier", type=Path, default=CLASSIFIER_FILE,
                        help="the classifier stage's .keras model, whose features score the samples")
    parser.add_argument("--metrics", type=Path, default=METRICS_FILE, help="where to write metrics.json")
    parser.add_argument("--per-class", type=Path, default=PER_CLASS_FILE, help="where to write per-class CSV")
    parser.add_argument("--model-kind", type=Path, default=MODEL_KIND_FILE,
                        help="where to write which model kind (vae, cvae) the metrics score")
    return run_stage("evaluate", _run, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
