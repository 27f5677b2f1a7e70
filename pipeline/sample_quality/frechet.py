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


def bootstrap_interval(features_a: np.ndarray, features_b: np.ndarray, resamples: int, rng: np.random.Generator,
                       level: float = 0.95) -> Interval:
    """Percentile bootstrap interval of ``fid``: both sets resampled with replacement ``resamples`` times.

    A resample holds repeated rows, so fewer distinct ones, and FID's small-sample bias lifts it: the
    interval says how much the number moves with the draw of images, and sits a little above the estimate.
    """
    features_a = np.asarray(features_a, dtype=np.float64)
    features_b = np.asarray(features_b, dtype=np.float64)
    values = [fid(features_a[rng.integers(0, len(features_a), len(features_a))],
                  features_b[rng.integers(0, len(features_b), len(features_b))]) for _ in range(resamples)]
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)
