"""The training objective on small arrays: one draw is today's loss, the IWAE bound is at least the ELBO on a
batch, the importance weights are the Gaussian densities' ratio, and β warms up to its value on the stated epoch."""

import keras
import numpy as np
import pytest
from keras import ops

from pipeline.model.losses import kl_loss, reconstruction_loss
from pipeline.model.objective import batch_objective, kl_weight, log_importance_weights, more_draws
from pipeline.model.optimizers import steps_in
from pipeline.model.vae import Sampling

BATCH, LATENT, PIXELS = 6, 2, 784


def batch(samples: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Images, posterior moments, ``samples`` draws and the logits of a fixed random linear decoder."""
    rng = np.random.default_rng(seed)
    images = (rng.random((BATCH, PIXELS)) < 0.2).astype(np.float32)
    z_mean = rng.normal(size=(BATCH, LATENT)).astype(np.float32)
    z_log_var = rng.normal(-1.0, 0.3, size=(BATCH, LATENT)).astype(np.float32)
    noise = rng.standard_normal((samples, BATCH, LATENT)).astype(np.float32)
    z = z_mean + np.exp(0.5 * z_log_var) * noise
    weights = np.random.default_rng(99).normal(scale=2.0, size=(LATENT, PIXELS)).astype(np.float32)
    return {"images": images, "logits": z @ weights - 1.0, "z": z, "z_mean": z_mean, "z_log_var": z_log_var}


def test_one_draw_of_the_elbo_is_the_loss_as_computed_before_the_knobs() -> None:
    one = batch(1)
    loss, reconstruction, kl, neg_elbo = (float(value) for value in batch_objective(**one, beta=0.1))
    before_reconstruction = float(ops.mean(reconstruction_loss(one["images"], one["logits"][0])))
    before_kl = float(ops.mean(kl_loss(one["z_mean"], one["z_log_var"])))
    assert reconstruction == before_reconstruction and kl == before_kl
    assert loss == pytest.approx(before_reconstruction + 0.1 * before_kl, rel=1e-7)
    assert neg_elbo == pytest.approx(before_reconstruction + before_kl, rel=1e-7)


def test_the_logged_terms_are_the_elbo_whatever_the_objective() -> None:
    draws = batch(5)
    elbo = [float(value) for value in batch_objective(**draws)]
    iwae = [float(value) for value in batch_objective(**draws, importance_weighted=True)]
    assert iwae[1:] == elbo[1:]
    assert elbo[1] == pytest.approx(float(np.mean(reconstruction_loss(
        np.broadcast_to(draws["images"], draws["logits"].shape), draws["logits"]))), rel=1e-6)


def test_the_iwae_bound_is_at_least_the_elbo_of_the_same_draws_on_a_batch() -> None:
    """Jensen: log of the mean weight ≥ mean of the log weights, image by image (as in Burda et al. 2015)."""
    draws = batch(8)
    loss = float(batch_objective(**draws, importance_weighted=True)[0])
    reconstruction = reconstruction_loss(np.broadcast_to(draws["images"], draws["logits"].shape), draws["logits"])
    log_weights = np.asarray(log_importance_weights(reconstruction, draws["z"], draws["z_mean"], draws["z_log_var"]))
    sampled_elbo = log_weights.mean(axis=0)
    assert -loss >= sampled_elbo.mean()
    assert -loss > sampled_elbo.mean() + 1.0, "the weights of this batch differ, so the bound is strictly tighter"


def test_with_many_draws_the_iwae_bound_passes_the_analytic_elbo() -> None:
    draws = batch(2000, seed=3)
    loss, _, _, neg_elbo = (float(value) for value in batch_objective(**draws, importance_weighted=True))
    assert loss < neg_elbo - 1.0


def test_importance_weights_are_the_ratio_of_the_gaussian_densities() -> None:
    draws = batch(3)
    reconstruction = np.full((3, BATCH), 50.0, dtype=np.float32)
    ours = np.asarray(log_importance_weights(reconstruction, draws["z"], draws["z_mean"], draws["z_log_var"]))
    z, mean, log_var = (draws[key].astype(np.float64) for key in ("z", "z_mean", "z_log_var"))
    log_prior = -0.5 * np.sum(z**2 + np.log(2 * np.pi), axis=-1)
    log_posterior = -0.5 * np.sum((z - mean) ** 2 / np.exp(log_var) + log_var + np.log(2 * np.pi), axis=-1)
    np.testing.assert_allclose(ours, log_prior - log_posterior - 50.0, rtol=1e-5)


@pytest.mark.parametrize("samples", [1, 3])
def test_more_draws_keep_the_encoders_own_draw_first(samples: int) -> None:
    sampling = Sampling(seed=4)
    z_mean = np.array([[0.0, 10.0], [-5.0, 2.0]], dtype=np.float32)
    z_log_var = np.full((2, 2), -2.0, dtype=np.float32)
    first = sampling([z_mean, z_log_var])
    draws = np.asarray(more_draws(sampling, first, z_mean, z_log_var, samples))
    assert draws.shape == (samples, 2, 2)
    np.testing.assert_array_equal(draws[0], np.asarray(first))
    assert len({draws[index].tobytes() for index in range(samples)}) == samples


def test_many_draws_follow_the_posterior() -> None:
    z_mean = np.array([[1.0, -3.0]], dtype=np.float32)
    z_log_var = np.array([[0.0, np.log(0.25)]], dtype=np.float32)
    sampling = Sampling(seed=5)
    draws = np.asarray(more_draws(sampling, sampling([z_mean, z_log_var]), z_mean, z_log_var, 4000))[:, 0]
    np.testing.assert_allclose(draws.mean(axis=0), [1.0, -3.0], atol=0.06)
    np.testing.assert_allclose(draws.std(axis=0), [1.0, 0.5], rtol=0.05)


def test_beta_warms_up_linearly_and_stays() -> None:
    steps = [0, 4, 9, 10, 1000]
    assert [float(kl_weight(step, 0.5, 10)) for step in steps] == pytest.approx([0.05, 0.25, 0.5, 0.5, 0.5])
    assert kl_weight(keras.Variable(3, dtype="int64"), 0.5, 0) == 0.5, "no warm-up: the float β, as before"


@pytest.mark.parametrize(("warmup_epochs", "steps_per_epoch"), [(2.0, 600), (1.0, 3), (0.5, 600)])
def test_beta_warmup_reaches_beta_on_the_last_step_of_the_stated_epoch(
    warmup_epochs: float, steps_per_epoch: int
) -> None:
    warmup = steps_in(warmup_epochs, steps_per_epoch)
    last = round(warmup_epochs * steps_per_epoch) - 1  # the warm-up's last step, counted from 0
    assert float(kl_weight(last, 1.0, warmup)) == 1.0
    assert float(kl_weight(last - 1, 1.0, warmup)) < 1.0
