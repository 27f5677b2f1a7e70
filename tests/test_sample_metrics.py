"""The sample metrics' arithmetic on synthetic features: FID against its closed form and the usual sqrtm
formula, precision and recall against the reference implementation (prdc) and the cases they must tell apart."""

import numpy as np
import prdc
import pytest
import scipy.linalg

from pipeline.sample_quality.frechet import bootstrap_interval, fid, frechet_distance, gaussian_moments
from pipeline.sample_quality.manifold import knn_radii, manifold_scores, precision_recall
from pipeline.sample_quality.scores import LABEL_ACCURACY, pick_test_images, prior_samples, quantize, sample_metrics


def gaussian_features(seed: int, n: int = 600, d: int = 8, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, scale, (n, d))


def sqrtm_fid(a: np.ndarray, b: np.ndarray) -> float:
    """FID as pytorch-fid and the original TensorFlow code compute it, with scipy's matrix square root."""
    mean_a, cov_a = a.mean(0), np.cov(a, rowvar=False)
    mean_b, cov_b = b.mean(0), np.cov(b, rowvar=False)
    cross = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b - 2 * cross))


def test_fid_of_a_set_with_itself_is_zero() -> None:
    features = gaussian_features(0)
    assert fid(features, features) == pytest.approx(0.0, abs=1e-9)


def test_fid_of_two_gaussians_is_the_closed_form() -> None:
    """For diagonal covariances d² = ‖μ₁ − μ₂‖² + Σ (σ₁ − σ₂)²."""
    mean_a, mean_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    sd_a, sd_b = np.array([1.0, 2.0, 0.5]), np.array([3.0, 1.0, 0.5])
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((sd_a - sd_b) ** 2)
    assert frechet_distance(mean_a, np.diag(sd_a**2), mean_b, np.diag(sd_b**2)) == pytest.approx(expected)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fid_equals_the_sqrtm_formula_of_the_reference_code_and_is_symmetric(seed: int) -> None:
    a = gaussian_features(seed) @ np.random.default_rng(seed + 10).normal(size=(8, 8))
    b = gaussian_features(seed + 20, shift=0.3, scale=1.5)
    assert fid(a, b) == pytest.approx(sqrtm_fid(a, b), rel=1e-6)
    assert fid(a, b) == pytest.approx(fid(b, a), rel=1e-9)


def test_fid_rises_with_the_distance_between_the_sets() -> None:
    real = gaussian_features(0)
    values = [fid(real, gaussian_features(1, shift=shift)) for shift in (0.0, 0.2, 0.5, 1.0)]
    assert values == sorted(values) and values[0] < 0.2 < values[-1]


def test_gaussian_moments_need_two_rows() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_moments(np.zeros((1, 4)))


def test_bootstrap_interval_is_ordered_reproducible_and_near_the_estimate() -> None:
    a, b = gaussian_features(0), gaussian_features(1, shift=0.5)
    first = bootstrap_interval(a, b, 50, np.random.default_rng(7))
    assert first == bootstrap_interval(a, b, 50, np.random.default_rng(7))
    low, high = first
    assert low < high
    assert low - 0.5 < fid(a, b) < high + 0.5


def test_block_bootstrap_spreads_like_resampling_single_rows() -> None:
    """Blocks of independent rows are independent: the interval's width matches the row-by-row bootstrap's."""
    a, b = gaussian_features(0, n=2000), gaussian_features(1, n=2000, shift=0.3)
    rng = np.random.default_rng(5)
    rows = [fid(a[rng.integers(0, 2000, 2000)], b[rng.integers(0, 2000, 2000)]) for _ in range(200)]
    row_width = np.subtract(*np.percentile(rows, [97.5, 2.5]))
    low, high = bootstrap_interval(a, b, 200, np.random.default_rng(6))
    assert 0.7 * row_width < high - low < 1.3 * row_width


def test_bootstrap_interval_narrows_with_more_images() -> None:
    few = bootstrap_interval(gaussian_features(0, n=200), gaussian_features(1, n=200, shift=0.5), 40,
                             np.random.default_rng(0))
    many = bootstrap_interval(gaussian_features(0, n=3000), gaussian_features(1, n=3000, shift=0.5), 40,
                              np.random.default_rng(0))
    assert many[1] - many[0] < few[1] - few[0]


def test_knn_radii_are_the_distance_to_the_kth_other_point() -> None:
    points = np.array([[0.0], [1.0], [3.0], [7.0]])
    assert knn_radii(points, 1).tolist() == [1.0, 1.0, 4.0, 16.0]  # squared distances
    assert knn_radii(points, 2).tolist() == [9.0, 4.0, 9.0, 36.0]


@pytest.mark.parametrize("k", [0, 4])
def test_knn_radii_need_more_points_than_neighbours(k: int) -> None:
    with pytest.raises(ValueError, match="need more than k points"):
        knn_radii(np.zeros((4, 2)), k)


@pytest.mark.parametrize(("shift", "scale"), [(0.0, 1.0), (0.5, 1.0), (0.0, 0.5), (0.0, 2.0)])
@pytest.mark.parametrize("chunk", [64, 1000])
def test_precision_and_recall_equal_the_reference_implementation(shift: float, scale: float, chunk: int) -> None:
    real, generated = gaussian_features(0, n=500), gaussian_features(1, n=400, shift=shift, scale=scale)
    reference = prdc.compute_prdc(real, generated, nearest_k=3)
    assert manifold_scores(real, generated, 3, chunk) == pytest.approx(
        (reference["precision"], reference["recall"], reference["coverage"]), abs=1e-12)


def test_samples_on_a_thin_sheet_recall_nothing_yet_coverage_sees_how_much_they_span() -> None:
    """Decoder means of a 2-D latent space lie on a sheet: their own k-NN balls are tiny, so recall is 0."""
    real = gaussian_features(0, n=800, d=8)
    sheet = np.zeros((800, 8))
    sheet[:, :2] = np.random.default_rng(1).normal(size=(800, 2))
    half_sheet = sheet.copy()
    half_sheet[:, 0] = np.abs(half_sheet[:, 0])
    _, recall, coverage = manifold_scores(real, sheet, 3)
    _, _, half_coverage = manifold_scores(real, half_sheet, 3)
    assert recall < 0.02 and coverage > 0.05
    assert half_coverage < coverage


def test_samples_squeezed_into_one_mode_are_precise_but_do_not_recall_the_data() -> None:
    """Kynkäänniemi et al.'s point: FID mixes the two failures, precision and recall separate them."""
    real = gaussian_features(0, n=800, scale=1.0)
    collapsed = gaussian_features(1, n=800, scale=0.3)
    blurred = gaussian_features(2, n=800, scale=3.0)
    precision, recall = precision_recall(real, collapsed, 3)
    assert precision > 0.95 and recall < 0.3
    precision, recall = precision_recall(real, blurred, 3)
    assert precision < 0.3 and recall > 0.9


def test_disjoint_sets_have_neither_precision_nor_recall() -> None:
    assert precision_recall(gaussian_features(0), gaussian_features(1, shift=50.0), 3) == (0.0, 0.0)


def test_quantize_rounds_to_the_256_grey_levels_of_the_test_images() -> None:
    images = np.array([[0.0, 0.5, 1.0, 1.2, -0.1, 0.0019, 0.002]])
    levels = quantize(images) * 255
    assert np.allclose(levels, np.round(levels)) and levels.min() == 0 and levels.max() == 255
    assert quantize(images).dtype == np.float32


def test_all_test_images_are_compared_when_the_counts_match_else_a_seeded_subset() -> None:
    assert pick_test_images(10, 10, 0).tolist() == list(range(10))
    subset = pick_test_images(40, 100, 3)
    assert len(set(subset.tolist())) == 40 and subset.tolist() == sorted(subset.tolist())
    assert subset.tolist() == pick_test_images(40, 100, 3).tolist() != pick_test_images(40, 100, 4).tolist()
    with pytest.raises(ValueError, match="the test split has 10"):
        pick_test_images(11, 10, 0)


def test_prior_samples_are_seeded_quantized_decoder_means_with_the_labels_passed_on() -> None:
    seen: list[np.ndarray | None] = []

    def decode(z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        seen.append(labels)
        return np.tile(1 / (1 + np.exp(-z[:, :1])), (1, 784))

    labels = np.arange(5) % 3
    first = prior_samples(decode, 5, 2, seed=1, labels=labels)
    assert first.shape == (5, 784) and np.array_equal(first, prior_samples(decode, 5, 2, seed=1, labels=labels))
    assert not np.array_equal(first, prior_samples(decode, 5, 2, seed=2, labels=labels))
    assert np.allclose(first * 255, np.round(first * 255))
    assert seen[0] is labels


def test_label_accuracy_is_reported_only_for_samples_drawn_for_labels() -> None:
    real, generated = gaussian_features(0, n=100), gaussian_features(1, n=100)
    unconditional = sample_metrics(real, generated, 3, 5, 0)
    assert LABEL_ACCURACY not in unconditional
    assert unconditional["sample_fid_low"] < unconditional["sample_fid_high"]
    assert 0 <= unconditional["sample_coverage"] <= 1
    labels = np.arange(100) % 10
    classes = labels.copy()
    classes[:25] = (classes[:25] + 1) % 10
    assert sample_metrics(real, generated, 3, 5, 0, classes, labels)[LABEL_ACCURACY] == 0.75
