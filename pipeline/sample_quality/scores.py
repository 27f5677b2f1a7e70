"""Evaluate's sample metrics: decoder samples against as many test images, in the classifier's features.

The samples are the decoder's mean images (pixel probabilities) at z ~ N(0, I), not Bernoulli draws: the
test images are grey levels, and a Bernoulli draw of a grey-level mean is salt-and-pepper noise that looks
like no test image, so its FID would measure the likelihood's mismatch with grey pixels rather than the
samples. Both sides go through the same pre-processing (Parmar et al. 2022: it moves FID): the means are
rounded to the 256 grey levels the test images have, and neither side is resized. For the conditional VAE
sample i is drawn for the label of test image i, so both sides have the same class mix, and the share of
samples the classifier assigns to their label is reported too. Every draw has its own seeded stream,
apart from the likelihood estimates' (``pipeline.model.likelihood``), so those stay as they were.
"""

from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from pipeline.sample_quality.frechet import bootstrap_interval, fid
from pipeline.sample_quality.manifold import manifold_scores

SAMPLE_STREAM, PICK_STREAM, BOOTSTRAP_STREAM = 2, 3, 4
"""Seed streams ``(evaluate.seed, stream)``; 0 and 1 are the likelihood estimates'."""
GREY_LEVELS = 255
BLAS_THREADS = 1
METRIC_NAMES = ("sample_fid", "sample_fid_low", "sample_fid_high", "sample_precision", "sample_recall",
                "sample_coverage")
LABEL_ACCURACY = "sample_label_accuracy"

DecodeFn = Callable[[np.ndarray, np.ndarray | None], np.ndarray]
"""Pixel means (n, 784) of latent points (n, latent_dim), given class indices (n,) or ``None``."""


def quantize(images: np.ndarray) -> np.ndarray:
    """Pixel values rounded to the 256 grey levels of an 8-bit image, as float32 in [0, 1]."""
    return (np.round(np.clip(images, 0.0, 1.0) * GREY_LEVELS) / GREY_LEVELS).astype(np.float32)


def pick_test_images(count: int, total: int, seed: int) -> np.ndarray:
    """Indices of the ``count`` test images to compare with: all of them, or a seeded draw in test-set order.

    Raises ``ValueError`` when ``count`` exceeds ``total``.
    """
    if count > total:
        raise ValueError(f"{count} samples need as many test images; the test split has {total}")
    if count == total:
        return np.arange(total)
    return np.sort(np.random.default_rng([seed, PICK_STREAM]).choice(total, count, replace=False))


def prior_samples(decode: DecodeFn, count: int, latent_dim: int, seed: int,
                  labels: np.ndarray | None = None) -> np.ndarray:
    """``count`` decoder means at z ~ N(0, I), quantized: (count, 784); ``labels`` (count,) for a conditional VAE."""
    z = np.random.default_rng([seed, SAMPLE_STREAM]).standard_normal((count, latent_dim), dtype=np.float32)
    return quantize(np.asarray(decode(z, labels)))


def sample_metrics(test_features: np.ndarray, sample_features: np.ndarray, nearest_neighbors: int,
                   bootstrap_resamples: int, seed: int, sample_classes: np.ndarray | None = None,
                   sample_labels: np.ndarray | None = None) -> dict[str, float]:
    """FID with its 95 % bootstrap interval, precision, recall and coverage of the samples' features against the
    test images'; with ``sample_labels`` (the labels the samples were drawn for) and ``sample_classes`` (what the
    classifier calls them), also ``sample_label_accuracy``.

    FID is in squared feature units, lower is better; the others are shares in [0, 1], higher is better. BLAS runs
    on one thread here: the bootstrap's 128 × 128 eigendecompositions ran 10 × slower in CPU time on two threads
    of a busy 2-core machine, and one thread sums in one order, so the numbers never depend on the thread count.
    """
    with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
        low, high = bootstrap_interval(test_features, sample_features, bootstrap_resamples,
                                       np.random.default_rng([seed, BOOTSTRAP_STREAM]))
        precision, recall, coverage = manifold_scores(test_features, sample_features, nearest_neighbors)
        distance = fid(test_features, sample_features)
    metrics = dict(zip(METRIC_NAMES, (distance, low, high, precision, recall, coverage), strict=True))
    if sample_labels is not None and sample_classes is not None:
        metrics[LABEL_ACCURACY] = float(np.mean(sample_classes == sample_labels))
    return metrics
