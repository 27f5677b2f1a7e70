"""The Fréchet distance between two sets of feature vectors, each summarised as a Gaussian ("FID").

FID (Heusel et al. 2017) is the Fréchet (2-Wasserstein) distance between Gaussians fitted to the features
of real and generated images (Dowson and Landau 1982):

    d² = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^½ Σ₂ Σ₁^½)^½

Heusel et al. take Inception-v3's pool features of natural images; here the features come from the
project's own MNIST classifier (``pipeline.sample_quality.classifier``), so the numbers are comparable
only with each other, never with published FIDs. The estimate is biased upwards by finite samples, about
in proportion to 1/n (Chong and Forsyth 2020), so both sets always have the same fixed size.
"""

import numpy as np

Interval = tuple[float, float]


def gaussian_moments(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and covariance (d, d, with n − 1 in the denominator) of ``features`` (n, d), in float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need at least 2 feature rows of shape (n, d), got {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a covariance; tiny negative eigenvalues from rounding count as 0."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """d² between N(mean_a, cov_a) and N(mean_b, cov_b), in squared feature units; 0 for equal moments.

    The cross term is computed on the symmetric Σₐ^½ Σ_b Σₐ^½, whose eigenvalues are real and non-negative,
    so no complex square root (the usual ``scipy.linalg.sqrtm`` path) is needed.
    """
    root_a = _psd_sqrt(cov_a)
    cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_cross = float(np.sum(np.sqrt(np.clip(cross, 0.0, None))))
    difference = float(np.sum((mean_a - mean_b) ** 2))
    return max(0.0, difference + float(np.trace(cov_a)) + float(np.trace(cov_b)) - 2.0 * trace_cross)


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets (n, d) and (m, d)."""
    return frechet_distance(*gaussian_moments(features_a), *gaussian_moments(features_b))


BLOCKS = 100
"""Blocks of consecutive rows per set in the bootstrap: resampling blocks costs additions of their precomputed
moments instead of a new covariance; 10 000 images make blocks of 100."""


def _block_moments(features: np.ndarray, blocks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row counts (B,), sums (B, d) and scatter matrices Σ xxᵀ (B, d, d) of up to ``blocks`` consecutive blocks."""
    block = -(-len(features) // blocks)
    starts = range(0, len(features), block)
    counts = np.array([len(features[start : start + block]) for start in starts], dtype=np.float64)
    sums = np.stack([features[start : start + block].sum(axis=0) for start in starts])
    scatters = np.stack([features[start : start + block].T @ features[start : start + block] for start in starts])
    return counts, sums, scatters


def _resampled_moments(moments: tuple[np.ndarray, np.ndarray, np.ndarray],
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of one resample: as many blocks as there are, drawn with replacement."""
    counts, sums, scatters = moments
    weights = np.bincount(rng.integers(0, len(counts), len(counts)), minlength=len(counts)).astype(np.float64)
    n = weights @ counts
    mean = weights @ sums / n
    scatter = np.tensordot(weights, scatters, axes=1)
    return mean, (scatter - n * np.outer(mean, mean)) / (n - 1)


def bootstrap_interval(features_a: np.ndarray, features_b: np.ndarray, resamples: int, rng: np.random.Generator,
                       level: float = 0.95, blocks: int = BLOCKS) -> Interval:
    """Percentile bootstrap interval of ``fid``: both sets resampled with replacement ``resamples`` times, as
    ``blocks`` blocks of consecutive rows (the rows are independent draws, so blocks of them are too).

    A resample repeats blocks, so it holds fewer distinct images, and FID's small-sample bias lifts it: the
    interval says how much the number moves with the draw of images, and sits a little above the estimate.
    """
    moments_a = _block_moments(np.asarray(features_a, dtype=np.float64), blocks)
    moments_b = _block_moments(np.asarray(features_b, dtype=np.float64), blocks)
    values = [frechet_distance(*_resampled_moments(moments_a, rng), *_resampled_moments(moments_b, rng))
              for _ in range(resamples)]
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)
