"""The evaluate stage: ELBO, importance-sampled −log p(x), active units and MSE against NumPy; a run end to end."""

import csv
import json
import math
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import random_images

from pipeline.data.splits import save_split
from pipeline.evaluate import MetricsError, check_metrics, main, per_class_csv, summarize
from pipeline.model.likelihood import (
    ELBO_STREAM,
    IS_STREAM,
    LikelihoodEstimator,
    active_units,
    latent_noise,
    log_mean_exp,
)
from pipeline.model.trained_vae import TrainedVae
from pipeline.model.vae import IMAGE_PIXELS, build_vae
from pipeline.sample_quality.classifier import build_classifier
from pipeline.tracking.run_file import write_run_ref
from pipeline.tracking.run_lifecycle import training_run

LATENT, HIDDEN = 2, 8


def tiny_vae(seed: int = 0, decoder_scale: float = 1.0) -> keras.Model:
    """A latent_dim 2, intermediate 8 VAE; ``decoder_scale`` sharpens p(x|z) so the posterior matters."""
    keras.utils.set_random_seed(seed)
    vae = build_vae(LATENT, HIDDEN, seed=seed)
    for name in ("decoder_hidden", "decoder_logits"):
        layer = vae.get_layer("decoder").get_layer(name)
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel * decoder_scale, bias])
    return vae


def estimator(vae: keras.Model, max_rows: int = 25_000) -> LikelihoodEstimator:
    return LikelihoodEstimator(TrainedVae(vae), max_rows=max_rows)


def dense(model: keras.Model, name: str, inputs: np.ndarray, relu: bool = False) -> np.ndarray:
    kernel, bias = (weight.astype(np.float64) for weight in model.get_layer(name).get_weights())
    out = inputs @ kernel + bias
    return np.maximum(out, 0.0) if relu else out


def numpy_terms(vae: keras.Model, x: np.ndarray, noise: np.ndarray) -> dict[str, np.ndarray]:
    """The same quantities in float64 NumPy, straight from the definitions."""
    encoder, decoder = vae.get_layer("encoder"), vae.get_layer("decoder")
    hidden = dense(encoder, "encoder_hidden", x.astype(np.float64), relu=True)
    mean, log_var = dense(encoder, "z_mean", hidden), dense(encoder, "z_log_var", hidden)
    z = mean[:, None, :] + np.exp(0.5 * log_var)[:, None, :] * noise
    logits = dense(decoder, "decoder_logits", dense(decoder, "decoder_hidden", z, relu=True))
    log_likelihood = np.sum(x[:, None, :] * logits - np.logaddexp(0.0, logits), axis=-1)
    log_prior = np.sum(-0.5 * z**2 - 0.5 * np.log(2 * np.pi), axis=-1)
    log_posterior = np.sum(-0.5 * noise**2 - 0.5 * log_var[:, None, :] - 0.5 * np.log(2 * np.pi), axis=-1)
    weights = log_likelihood + log_prior - log_posterior
    peak = weights.max(axis=1)
    mean_logits = dense(decoder, "decoder_logits", dense(decoder, "decoder_hidden", mean, relu=True))
    pixels = 1.0 / (1.0 + np.exp(-mean_logits))
    return {
        "kl": 0.5 * np.sum(np.exp(log_var) + mean**2 - 1.0 - log_var, axis=-1),
        "reconstruction": -log_likelihood.mean(axis=1),
        "nll_is": -(peak + np.log(np.mean(np.exp(weights - peak[:, None]), axis=1))),
        "squared_error": np.mean((x - pixels) ** 2, axis=-1),
        "z_mean": mean,
    }


@pytest.mark.integration  # compiles XLA programs
def test_kl_elbo_importance_sampling_and_mse_match_numpy_with_the_same_noise() -> None:
    vae, x = tiny_vae(decoder_scale=3.0), random_images(6, seed=1)
    scores = estimator(vae, max_rows=10).score(x, elbo_samples=3, is_samples=7, batch_size=4, seed=5)
    elbo = numpy_terms(vae, x, latent_noise(5, ELBO_STREAM, 0, 6, 3, LATENT))
    importance = numpy_terms(vae, x, latent_noise(5, IS_STREAM, 0, 6, 7, LATENT))
    np.testing.assert_allclose(scores.kl_loss, elbo["kl"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(scores.reconstruction_loss, elbo["reconstruction"], rtol=1e-5)
    np.testing.assert_allclose(scores.neg_elbo, elbo["reconstruction"] + elbo["kl"], rtol=1e-5)
    np.testing.assert_allclose(scores.nll_is, importance["nll_is"], rtol=1e-5)
    np.testing.assert_allclose(scores.squared_error, elbo["squared_error"], rtol=1e-5)
    np.testing.assert_allclose(scores.z_mean, elbo["z_mean"], rtol=1e-5, atol=1e-6)


@pytest.mark.integration  # compiles XLA programs
def test_importance_sampling_bound_is_tighter_than_the_elbo_and_tightens_with_more_samples() -> None:
    vae, x = tiny_vae(decoder_scale=3.0), random_images(64, seed=1)
    few = estimator(vae).score(x, elbo_samples=20, is_samples=2, batch_size=64, seed=0)
    many = estimator(vae).score(x, elbo_samples=20, is_samples=100, batch_size=64, seed=0)
    assert many.nll_is.mean() < few.nll_is.mean() < few.neg_elbo.mean()
    assert np.all(many.nll_is <= many.neg_elbo + 1e-3)


@pytest.mark.integration  # compiles XLA programs
def test_one_importance_sample_equals_the_negative_elbo_in_expectation() -> None:
    vae, x = tiny_vae(decoder_scale=3.0), random_images(400, seed=1)
    scores = estimator(vae).score(x, elbo_samples=1, is_samples=1, batch_size=400, seed=3)
    gap = scores.nll_is - scores.neg_elbo
    assert np.std(gap) > 0.01  # the two use different draws, so they differ per image...
    assert abs(gap.mean()) < 4 * gap.std(ddof=1) / math.sqrt(len(gap))  # ...but not on average


def test_log_mean_exp_is_stable_for_large_magnitudes() -> None:
    np.testing.assert_allclose(log_mean_exp(np.array([[-1000.0, -1000.0], [1e4, 1e4 - math.log(3)]])),
                               [-1000.0, 1e4 + math.log(2 / 3)])
    assert log_mean_exp(np.array([-5e4, 0.0])) == pytest.approx(-math.log(2))


@pytest.mark.integration  # compiles XLA programs
def test_importance_sampling_stays_finite_when_log_weights_are_thousands_of_nats() -> None:
    """q(z|x) = p(z) and a decoder that ignores z: every weight equals p(x) ≈ e^-15 700, exactly the ELBO."""
    vae = tiny_vae()
    for model, names in (("encoder", ("z_mean", "z_log_var")), ("decoder", ("decoder_logits",))):
        for name in names:
            layer = vae.get_layer(model).get_layer(name)
            kernel, bias = layer.get_weights()
            layer.set_weights([np.zeros_like(kernel), np.full_like(bias, -20.0 if model == "decoder" else 0.0)])
    scores = estimator(vae).score(np.ones((3, IMAGE_PIXELS), np.float32), 2, 50, 3, seed=0)
    expected = IMAGE_PIXELS * np.logaddexp(0.0, 20.0)
    np.testing.assert_allclose(scores.nll_is, expected, rtol=1e-6)
    np.testing.assert_allclose(scores.neg_elbo, expected, rtol=1e-6)


@pytest.mark.integration  # compiles XLA programs
def test_active_units_counts_only_the_latent_dimension_that_varies_with_the_image() -> None:
    vae = tiny_vae()
    encoder = vae.get_layer("encoder")
    hidden = np.zeros((IMAGE_PIXELS, HIDDEN), np.float32)
    hidden[0, 0] = 1.0  # hidden unit 0 copies pixel 0
    mean = np.zeros((HIDDEN, LATENT), np.float32)
    mean[0, 0] = 2.0  # z_mean[0] = 2 · pixel 0; z_mean[1] is the constant bias
    encoder.get_layer("encoder_hidden").set_weights([hidden, np.zeros(HIDDEN, np.float32)])
    encoder.get_layer("z_mean").set_weights([mean, np.array([0.0, 1.5], np.float32)])
    x = random_images(20, seed=1)
    x[:, 0] = np.tile([0.0, 1.0], 10)
    scores = estimator(vae).score(x, 1, 1, 20, seed=0)
    assert np.var(scores.z_mean[:, 0]) == pytest.approx(1.0) and np.var(scores.z_mean[:, 1]) == 0.0
    assert active_units(scores.z_mean) == 1
    assert active_units(np.array([[0.0, 0.0], [0.1, 1.0]])) == 1  # variance 0.0025 is below 0.01


@pytest.mark.integration  # compiles XLA programs
def test_same_seed_gives_the_same_scores_whatever_the_batch_size() -> None:
    vae, x = tiny_vae(decoder_scale=3.0), random_images(10, seed=1)
    first = estimator(vae).score(x, 3, 9, batch_size=10, seed=7)
    again = estimator(vae).score(x, 3, 9, batch_size=10, seed=7)
    rebatched = estimator(vae, max_rows=8).score(x, 3, 9, batch_size=3, seed=7)
    other = estimator(vae).score(x, 3, 9, batch_size=10, seed=8)
    np.testing.assert_array_equal(first.nll_is, again.nll_is)
    np.testing.assert_array_equal(first.reconstruction_loss, again.reconstruction_loss)
    np.testing.assert_allclose(rebatched.nll_is, first.nll_is, rtol=1e-5)
    np.testing.assert_allclose(rebatched.neg_elbo, first.neg_elbo, rtol=1e-5)
    assert not np.allclose(other.nll_is, first.nll_is)


@pytest.mark.integration  # compiles XLA programs
def test_metrics_take_the_training_beta_and_a_broken_bound_or_nan_fails() -> None:
    scores = estimator(tiny_vae(decoder_scale=3.0)).score(random_images(8, seed=1), 2, 20, 8, seed=0)
    metrics = summarize(scores, beta=0.25)
    reconstruction, kl = metrics["test_reconstruction_loss"], metrics["test_kl_loss"]
    assert metrics["test_loss"] == pytest.approx(reconstruction + 0.25 * kl)
    assert metrics["test_neg_elbo"] == pytest.approx(reconstruction + kl)
    untrained_allowance = 20  # latent dims: this untrained encoder's gap (~32 nats) is not what is tested here
    check_metrics(metrics, scores.neg_elbo - scores.nll_is, untrained_allowance)
    gap = np.full(100, 0.5) + np.tile([-0.01, 0.01], 50)
    with pytest.raises(MetricsError, match="importance-sampling bound"):
        check_metrics(metrics | {"test_nll_is": metrics["test_neg_elbo"] + 0.5}, -gap, LATENT)
    with pytest.raises(MetricsError, match="test_mse=nan"):
        check_metrics(metrics | {"test_mse": float("nan")}, gap, LATENT)


GAP_METRICS = {"test_neg_elbo": 166.0, "test_mse": 0.05}
STEADY_GAP = np.tile([-0.01, 0.01], 50)
"""A per-image gap whose Monte Carlo slack is negligible, so only the allowance decides."""


@pytest.mark.parametrize(("gap", "latent_dim"), [(1.6, 2), (4.99, 2), (24.9, 10), (0.0, 1)])
def test_an_elbo_is_gap_within_the_latent_sizes_allowance_passes(gap: float, latent_dim: int) -> None:
    check_metrics(GAP_METRICS | {"test_nll_is": 166.0 - gap}, STEADY_GAP + gap, latent_dim)


@pytest.mark.parametrize(("gap", "latent_dim", "allowed"), [(5.2, 2, "5"), (40.0, 2, "5"), (3.0, 1, "2.5"),
                                                            (26.0, 10, "25")])
def test_an_elbo_is_gap_beyond_the_latent_sizes_allowance_fails_naming_both_numbers(
        gap: float, latent_dim: int, allowed: str) -> None:
    nll = 166.0 - gap
    with pytest.raises(MetricsError) as failure:
        check_metrics(GAP_METRICS | {"test_nll_is": nll}, STEADY_GAP + gap, latent_dim)
    message = str(failure.value)
    assert f"test_neg_elbo 166.0000 exceeds test_nll_is {nll:.4f}" in message
    assert f"more than the {allowed} nats a {latent_dim}-dimensional latent space allows" in message


def test_per_class_csv_has_one_row_per_present_class_with_its_name_count_and_mean() -> None:
    text = per_class_csv(np.array([1.0, 3.0, 10.0, 5.0]), np.array([7, 7, 2, 2], np.uint8), tuple("abcdefghij"))
    rows = list(csv.DictReader(text.splitlines()))
    assert rows == [
        {"class": "2", "class_name": "c", "count": "2", "test_neg_elbo": "7.500000"},
        {"class": "7", "class_name": "h", "count": "2", "test_neg_elbo": "2.000000"},
    ]
    with pytest.raises(MetricsError, match="no class name"):
        per_class_csv(np.zeros(1), np.array([3], np.uint8), ("a", "b"))


@pytest.mark.integration  # compiles XLA programs
def test_stage_writes_metrics_and_per_class_and_adds_them_to_the_training_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    labels = (np.arange(30) % 10).astype(np.uint8)
    save_split(tmp_path / "prepared", "test", random_images(30, seed=1), labels)
    tiny_vae().save(tmp_path / "vae.keras")
    build_classifier(10).save(tmp_path / "classifier.keras")  # untrained: the metrics need its features only
    params = tmp_path / "params.yaml"
    params.write_text("model: {latent_dim: 2, intermediate_dim: 8}\ntrain: {beta: 0.5}\n"
                      "evaluate: {elbo_samples: 2, is_samples: 8, batch_size: 16, seed: 0, sample_count: 30,"
                      " bootstrap_resamples: 4}\n")
    with training_run("evaluate-test", {"model.latent_dim": 2}, {}) as run:
        pass
    write_run_ref(tmp_path / "run.json", run)
    metrics_file, per_class_file = tmp_path / "reports" / "metrics.json", tmp_path / "reports" / "per_class.csv"
    code = main(["--params", str(params), "--prepared", "prepared", "--model", "vae.keras", "--run", "run.json",
                 "--classifier", "classifier.keras", "--metrics", str(metrics_file),
                 "--per-class", str(per_class_file)])
    assert code == 0
    metrics = json.loads(metrics_file.read_text())
    assert set(metrics) == {"test_loss", "test_reconstruction_loss", "test_kl_loss", "test_neg_elbo",
                            "test_nll_is", "test_mse", "active_units", "sample_fid", "sample_fid_low",
                            "sample_fid_high", "sample_precision", "sample_recall", "sample_coverage"}
    assert 0 <= metrics["sample_precision"] <= 1 and 0 <= metrics["sample_recall"] <= 1
    assert metrics["sample_fid_low"] < metrics["sample_fid_high"]
    assert metrics["test_nll_is"] <= metrics["test_neg_elbo"]
    rows = list(csv.DictReader(per_class_file.read_text().splitlines()))
    assert [(row["class_name"], row["count"]) for row in rows] == [(str(digit), "3") for digit in range(10)]
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    logged = client.get_run(run.run_id)
    assert logged.info.status == "FINISHED"
    assert {key: pytest.approx(value) for key, value in metrics.items()} == {
        key: value for key, value in logged.data.metrics.items() if key in metrics
    }
    assert "per_class.csv" in [artifact.path for artifact in client.list_artifacts(run.run_id)]


def test_stage_with_bad_params_or_no_training_run_fails_with_one_line_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    save_split(tmp_path / "prepared", "test", random_images(3, seed=1), np.zeros(3, np.uint8))
    (tmp_path / "vae.keras").write_bytes(b"not read")
    code = main(["--params", str(tmp_path / "absent.yaml")])
    assert code == 1 and "absent.yaml" in capsys.readouterr().err
    (tmp_path / "params.yaml").write_text("evaluate: {is_samples: 5}\n")
    code = main(["--prepared", "prepared", "--model", "vae.keras", "--run", "missing.json"])
    assert code == 1 and "fewer than evaluate.sample_count 10000" in capsys.readouterr().err
    (tmp_path / "params.yaml").write_text("evaluate: {is_samples: 5, sample_count: 3, nearest_neighbors: 2}\n")
    code = main(["--prepared", "prepared", "--model", "vae.keras", "--run", "missing.json"])
    assert code == 1 and "models/classifier.keras not found; run the classifier stage first" in capsys.readouterr().err
    (tmp_path / "classifier.keras").write_bytes(b"not read")
    code = main(["--prepared", "prepared", "--model", "vae.keras", "--run", "missing.json",
                 "--classifier", "classifier.keras"])
    assert code == 1 and "missing.json" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()
