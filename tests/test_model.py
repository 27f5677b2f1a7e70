"""The VAE's layers and losses on synthetic arrays: shapes, the sampling layer, the loss formulas, saving."""

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import REPO_ROOT, random_images

from pipeline.core.errors import PipelineError
from pipeline.model.losses import kl_loss, reconstruction_loss
from pipeline.model.trained_vae import ModelLoadError, load_trained_vae
from pipeline.model.vae import IMAGE_PIXELS, Sampling, build_vae, decoder_logits

LATENT_DIM, INTERMEDIATE_DIM = 2, 32


def numpy_bce_sum(targets: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Summed binary cross-entropy from logits, in float64: max(l, 0) − l·x + log(1 + e^−|l|)."""
    x, logit = targets.astype(np.float64), logits.astype(np.float64)
    return (np.maximum(logit, 0) - logit * x + np.log1p(np.exp(-np.abs(logit)))).sum(axis=-1)


def numpy_kl(z_mean: np.ndarray, z_log_var: np.ndarray) -> np.ndarray:
    m, v = z_mean.astype(np.float64), z_log_var.astype(np.float64)
    return 0.5 * (np.exp(v) + m**2 - 1.0 - v).sum(axis=-1)


@pytest.fixture(scope="module")
def vae() -> keras.Model:
    return build_vae(LATENT_DIM, INTERMEDIATE_DIM, seed=1)


def test_models_declare_no_fixed_batch_size(vae: keras.Model) -> None:
    encoder, decoder = vae.get_layer("encoder"), vae.get_layer("decoder")
    assert vae.input_shape == (None, IMAGE_PIXELS) and vae.output_shape == (None, IMAGE_PIXELS)
    assert encoder.output_shape == [(None, LATENT_DIM)] * 3
    assert decoder.input_shape == (None, LATENT_DIM) and decoder.output_shape == (None, IMAGE_PIXELS)


@pytest.mark.parametrize("rows", [1, 7, 100])
def test_encoder_decoder_and_vae_accept_any_batch_size(vae: keras.Model, rows: int) -> None:
    x = random_images(rows)
    z_mean, z_log_var, z = (t.numpy() for t in vae.get_layer("encoder")(x))
    assert z_mean.shape == z_log_var.shape == z.shape == (rows, LATENT_DIM)
    decoded = vae.get_layer("decoder")(z).numpy()
    logits = decoder_logits(vae.get_layer("decoder"))(z).numpy()
    reconstructed = vae(x).numpy()
    assert decoded.shape == logits.shape == reconstructed.shape == (rows, IMAGE_PIXELS)
    np.testing.assert_allclose(decoded, 1 / (1 + np.exp(-logits.astype(np.float64))), rtol=1e-5, atol=1e-6)
    assert np.all((reconstructed >= 0) & (reconstructed <= 1))


def test_compiled_predict_handles_a_partial_last_batch(vae: keras.Model) -> None:
    assert vae.predict(random_images(100), batch_size=7, verbose=0).shape == (100, IMAGE_PIXELS)


def test_sampling_draws_have_the_requested_mean_and_variance() -> None:
    rows = 200_000
    mu = np.array([0.5, -1.0, 2.0, 0.0], dtype=np.float32)
    log_var = np.array([0.0, -2.0, 1.5, -6.0], dtype=np.float32)
    z = Sampling(seed=3)([np.tile(mu, (rows, 1)), np.tile(log_var, (rows, 1))]).numpy().astype(np.float64)
    variance = np.exp(log_var.astype(np.float64))
    # Five standard errors: the mean's is σ/√n, the sample variance's σ²·√(2/n).
    np.testing.assert_array_less(np.abs(z.mean(axis=0) - mu), 5 * np.sqrt(variance / rows))
    np.testing.assert_array_less(np.abs(z.var(axis=0) / variance - 1), 5 * np.sqrt(2 / rows))
    standardized = (z - mu) / np.sqrt(variance)
    off_diagonal = np.corrcoef(standardized, rowvar=False)[np.triu_indices(len(mu), k=1)]
    np.testing.assert_array_less(np.abs(off_diagonal), 5 / np.sqrt(rows))


def test_sampling_with_the_same_seed_repeats_its_draws() -> None:
    inputs = [np.zeros((50, 3), np.float32), np.zeros((50, 3), np.float32)]
    first, twin, other = Sampling(seed=7), Sampling(seed=7), Sampling(seed=8)
    draws = [first(inputs).numpy(), first(inputs).numpy()]
    np.testing.assert_array_equal([twin(inputs).numpy(), twin(inputs).numpy()], draws)
    assert not np.allclose(draws[0], draws[1]), "consecutive calls must draw fresh noise"
    assert not np.allclose(other(inputs).numpy(), draws[0]), "another seed must give other draws"
    assert not np.allclose(draws[0][0], draws[0][1]), "each row must get its own noise"


@pytest.mark.parametrize("dtype", ["float64", "float16", "bfloat16"])
def test_sampling_draws_its_noise_in_the_float_type_of_z_mean(dtype: str) -> None:
    """Not in Keras' global float type (``floatx``, which a user's keras.json sets): a 58-line TypeError."""
    z = Sampling(seed=3, dtype=dtype)([np.zeros((4, 2), np.float32), np.zeros((4, 2), np.float32)])
    assert keras.backend.standardize_dtype(z.dtype) == dtype
    assert np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(z, "float32"))).all()


def test_reconstruction_loss_matches_numpy_summed_bce() -> None:
    rng = np.random.default_rng(4)
    targets = np.concatenate([random_images(3, seed=5), np.round(random_images(2, seed=6))])
    logits = (3 * rng.standard_normal(targets.shape)).astype(np.float32)
    result = reconstruction_loss(targets, logits).numpy()
    assert result.shape == (5,)
    np.testing.assert_allclose(result, numpy_bce_sum(targets, logits), rtol=1e-5)


@pytest.mark.parametrize("magnitude", [50.0, 1e4])
def test_reconstruction_loss_stays_finite_on_saturated_logits(magnitude: float) -> None:
    targets = np.concatenate([random_images(2, seed=7), np.round(random_images(2, seed=8))])
    signs = np.where(np.random.default_rng(9).random(targets.shape) < 0.5, -1.0, 1.0)
    logits = tf.constant(magnitude * signs, dtype=tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        result = reconstruction_loss(targets, logits)
    gradient = tape.gradient(result, logits).numpy()
    assert np.all(np.isfinite(result.numpy())) and np.all(np.isfinite(gradient))
    np.testing.assert_allclose(result.numpy(), numpy_bce_sum(targets, logits.numpy()), rtol=1e-5)


def test_reconstruction_loss_of_confident_correct_logits_is_near_zero() -> None:
    targets = np.round(random_images(2, seed=10))
    result = reconstruction_loss(targets, np.where(targets > 0.5, 50.0, -50.0).astype(np.float32)).numpy()
    assert np.all(result >= 0) and np.all(result < 1e-12)


def test_kl_loss_matches_numpy_and_vanishes_at_the_prior() -> None:
    rng = np.random.default_rng(11)
    z_mean = (2 * rng.standard_normal((6, 4))).astype(np.float32)
    z_log_var = rng.uniform(-20, 5, (6, 4)).astype(np.float32)
    result = kl_loss(z_mean, z_log_var).numpy()
    assert result.shape == (6,) and np.all(result > 0)
    np.testing.assert_allclose(result, numpy_kl(z_mean, z_log_var), rtol=1e-5)
    assert kl_loss(np.zeros((1, 4), np.float32), np.zeros((1, 4), np.float32)).numpy()[0] == 0.0


def test_saved_vae_reloads_with_the_same_weights_and_sampling_seed(tmp_path: Path) -> None:
    original = build_vae(LATENT_DIM, INTERMEDIATE_DIM, seed=11)
    path = tmp_path / "vae.keras"
    original.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    x, z = random_images(9), np.random.default_rng(12).standard_normal((9, LATENT_DIM)).astype(np.float32)
    for name in ("encoder", "decoder"):
        assert loaded.get_layer(name).name == name
    before, after = original.get_layer("encoder")(x), loaded.get_layer("encoder")(x)
    for index in (0, 1):  # z_mean, z_log_var; z is a fresh draw on each call
        np.testing.assert_array_equal(after[index].numpy(), before[index].numpy())
    np.testing.assert_array_equal(loaded.get_layer("decoder")(z).numpy(), original.get_layer("decoder")(z).numpy())
    sampling = loaded.get_layer("encoder").get_layer("z")
    assert isinstance(sampling, Sampling) and sampling.seed == 11


def test_reloaded_vae_draws_like_a_fresh_model_with_its_seed(tmp_path: Path) -> None:
    original = build_vae(LATENT_DIM, INTERMEDIATE_DIM, seed=13)
    path = tmp_path / "vae.keras"
    original.save(path)
    x = random_images(9)
    first, second = load_trained_vae(path).vae(x).numpy(), load_trained_vae(path).vae(x).numpy()
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(original(x).numpy(), first)


def test_load_vae_refuses_a_file_holding_a_lambda_layer(tmp_path: Path) -> None:
    """The notebook's ``Lambda(sampling)`` would run arbitrary code from the file; safe mode refuses it."""
    z_mean = keras.Input(shape=(LATENT_DIM,))
    z_log_var = keras.Input(shape=(LATENT_DIM,))
    z = keras.layers.Lambda(lambda args: args[0] + keras.ops.exp(0.5 * args[1]), name="z")([z_mean, z_log_var])
    path = tmp_path / "lambda.keras"
    keras.Model([z_mean, z_log_var], z).save(path)
    with pytest.raises((ValueError, PipelineError), match="(?i)lambda|safe_mode"):
        load_trained_vae(path)


def test_load_vae_names_an_unknown_class_in_one_short_line(tmp_path: Path) -> None:
    """Keras buries "Could not locate class" under a chained TypeError and a dump of the whole config."""

    @keras.saving.register_keras_serializable(package="elsewhere")
    class Doubling(keras.layers.Layer):
        def call(self, inputs: object) -> object:
            return 2 * inputs

    inputs = keras.Input(shape=(3,))
    path = tmp_path / "foreign.keras"
    keras.Model(inputs, Doubling(name="doubling")(inputs)).save(path)
    del keras.saving.get_custom_objects()["elsewhere>Doubling"]  # as in a Python that never defined it
    with pytest.raises(ModelLoadError) as raised:
        load_trained_vae(path)
    message = str(raised.value)
    assert message.startswith(f"cannot load the model {path}: Could not locate class 'Doubling'"), message
    assert "elsewhere>Doubling" in message
    assert "\n" not in message and "config" not in message and len(message) < 400, message


@pytest.mark.integration
def test_readme_snippet_loads_the_saved_model_in_a_fresh_python_and_plain_keras_names_the_missing_layer(
    tmp_path: Path,
) -> None:
    """``keras.models.load_model`` without ``import pipeline`` fails on the Sampling layer; the snippet of
    docs/serving.md, run as written in a fresh interpreter, loads the file."""
    (tmp_path / "models").mkdir()
    build_vae(LATENT_DIM, 16, seed=0).save(tmp_path / "models" / "vae.keras")
    page = (REPO_ROOT / "docs" / "serving.md").read_text(encoding="utf-8")
    snippet = next(block for block in re.findall(r"```python\n(.*?)```", page, re.S)
                   if "keras.models.load_model" in block)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    plain = subprocess.run([sys.executable, "-c", "import keras; keras.models.load_model('models/vae.keras')"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert plain.returncode != 0 and "Could not locate class 'Sampling'" in plain.stderr
    documented = subprocess.run([sys.executable, "-c", snippet + "\nprint(vae.get_layer('encoder').name)"],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert documented.returncode == 0, documented.stderr[-2000:]
    assert documented.stdout.strip().splitlines()[-1] == "encoder"


def test_decoder_logits_takes_a_bare_latent_tensor_without_warning(vae: keras.Model) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logits = decoder_logits(vae.get_layer("decoder"))(np.zeros((3, LATENT_DIM), np.float32))
    assert logits.shape == (3, IMAGE_PIXELS)
