"""Improved precision and recall of generated samples (Kynkäänniemi et al. 2019), and coverage, on feature vectors.

Each set's manifold is the union of balls around its points, each ball reaching the point's k-th nearest
neighbour within its own set. Precision is the share of generated points inside the real manifold (are the
samples realistic?); recall the share of real points inside the generated manifold (do the samples cover
the data?). Recall trusts the generated set's own balls, which shrink to nothing when the samples lie on a
thin sheet, as the decoder means of a 2-D latent space do; coverage (Naeem et al. 2020) asks instead what
share of the real balls hold at least one sample, which only real points define. All are in [0, 1], higher
is better. Distances are Euclidean and computed in row chunks, so memory stays at ``chunk × n`` floats.
"""

import numpy as np

CHUNK_ROWS = 1000
DISTANCE_DTYPE = np.float32
"""Distances in float32, as the features are: twice the speed of float64, and a pair within rounding of a ball's
radius (~10⁻⁷ of it) is the only one whose side can change."""


def _squared_distances(queries: np.ndarray, reference: np.ndarray, reference_norms: np.ndarray) -> np.ndarray:
    """‖q − r‖² for every pair, (len(queries), len(reference)), clipped at 0 against rounding."""
    norms = np.einsum("ij,ij->i", queries, queries)
    return np.maximum(norms[:, None] + reference_norms[None, :] - 2.0 * queries @ reference.T, 0.0)


def knn_radii(features: np.ndarray, k: int, chunk: int = CHUNK_ROWS) -> np.ndarray:
    """Each point's squared distance to its k-th nearest other point of ``features`` (n, d): (n,).

    Raises ``ValueError`` unless 1 <= k < n.
    """
    features = np.asarray(features, dtype=DISTANCE_DTYPE)
    if not 1 <= k < len(features):
        raise ValueError(f"k = {k} neighbours need more than k points, got {len(features)}")
    norms = np.einsum("ij,ij->i", features, features)
    radii = np.empty(len(features), dtype=DISTANCE_DTYPE)
    for start in range(0, len(features), chunk):
        distances = _squared_distances(features[start : start + chunk], features, norms)
        radii[start : start + chunk] = np.partition(distances, k, axis=1)[:, k]  # column 0 is the point itself
    return radii


def precision_recall(real: np.ndarray, generated: np.ndarray, k: int, chunk: int = CHUNK_ROWS) -> tuple[float, float]:
    """``(precision, recall)`` of ``generated`` (m, d) against ``real`` (n, d), each with k-NN balls of its own set."""
    precision, recall, _ = manifold_scores(real, generated, k, chunk)
    return precision, recall


def manifold_scores(real: np.ndarray, generated: np.ndarray, k: int,
                    chunk: int = CHUNK_ROWS) -> tuple[float, float, float]:
    """``(precision, recall, coverage)`` of ``generated`` (m, d) against ``real`` (n, d), in one pass."""
    real = np.asarray(real, dtype=DISTANCE_DTYPE)
    generated = np.asarray(generated, dtype=DISTANCE_DTYPE)
    real_radii, generated_radii = knn_radii(real, k, chunk), knn_radii(generated, k, chunk)
    real_norms = np.einsum("ij,ij->i", real, real)
    realistic = np.zeros(len(generated), dtype=bool)   # generated point inside some real ball
    covered = np.zeros(len(real), dtype=bool)          # real point inside some generated ball
    nearest = np.full(len(real), np.inf)               # each real point's nearest sample, squared
    for start in range(0, len(generated), chunk):
        distances = _squared_distances(generated[start : start + chunk], real, real_norms)
        realistic[start : start + chunk] = np.any(distances <= real_radii[None, :], axis=1)
        covered |= np.any(distances <= generated_radii[start : start + chunk, None], axis=0)
        nearest = np.minimum(nearest, distances.min(axis=0))
    return float(realistic.mean()), float(covered.mean()), float(np.mean(nearest < real_radii))
