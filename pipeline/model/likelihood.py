"""Test-set likelihood metrics of a VAE: Monte Carlo ELBO and importance-sampled −log p(x).

All terms are in nats per image, with log p(x|z) = −(binary cross-entropy summed over pixels),
as in training. For the conditional VAE every term is conditioned on the label y, which both
q(z | x, y) and p(x | z, y) see, while the prior stays N(0, I) (Sohn et al. 2015, with the prior
independent of y): the same formulas then give the −ELBO of log p(x | y) and an importance-sampled
−log p(x | y). The noise for image ``i`` comes from its own generator seeded with
``(seed, stream, i)``, so the numbers depend on the seed and the images only, never on the
batch size. The math is ``keras.ops``, compiled by XLA on the backend Keras runs on
(``pipeline.model.compiled``): TensorFlow or JAX give the same numbers to float32 rounding.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from pipeline.model.compiled import compiled
from pipeline.model.losses import kl_loss, reconstruction_loss
from pipeline.model.tensors import Tensor
from pipeline.model.trained_vae import TrainedVae
from pipeline.model.vae import one_hot

ELBO_STREAM, IS_STREAM = 0, 1
MAX_ROWS = 25_000
"""Images × samples decoded in one compiled call: bounds memory to ~MAX_ROWS × 784 floats."""
ACTIVE_UNIT_THRESHOLD = 0.01


@dataclass(frozen=True)
class ImageScores:
    """Per-image terms over a set of images, each an array with one entry per image."""

    z_mean: np.ndarray
    reconstruction_loss: np.ndarray
    kl_loss: np.ndarray
    nll_is: np.ndarray
    squared_error: np.ndarray

    @property
    def neg_elbo(self) -> np.ndarray:
        """The negative ELBO (β = 1): Monte Carlo reconstruction term plus analytic KL."""
        return self.reconstruction_loss + self.kl_loss


def latent_noise(seed: int, stream: int, start: int, count: int, samples: int, latent_dim: int) -> np.ndarray:
    """Standard normal ε of shape (count, samples, latent_dim) for images ``start .. start+count-1``."""
    noise = np.empty((count, samples, latent_dim), dtype=np.float32)
    for row in range(count):
        rng = np.random.default_rng([seed, stream, start + row])
        noise[row] = rng.standard_normal((samples, latent_dim), dtype=np.float32)
    return noise


def log_mean_exp(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """log(mean(exp(values))) along ``axis``, shifted by the maximum so large magnitudes stay finite."""
    values = np.asarray(values, dtype=np.float64)
    peak = np.max(values, axis=axis, keepdims=True)
    total = np.log(np.mean(np.exp(values - peak), axis=axis))
    return total + np.squeeze(peak, axis=axis)


def active_units(z_mean: np.ndarray, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Latent dimensions whose variance of E_q[z|x] over the images exceeds ``threshold`` (Burda et al.)."""
    return int(np.sum(np.var(np.asarray(z_mean, dtype=np.float64), axis=0) > threshold))


class LikelihoodEstimator:
    """Compiled per-image ELBO and importance-sampling estimates for one encoder/decoder pair."""

    def __init__(self, trained: TrainedVae, max_rows: int = MAX_ROWS) -> None:
        encoder = trained.encoder
        self.moments = keras.Model(encoder.inputs, encoder.outputs[:2], name="posterior_moments")
        self.logits = trained.decoder_logits
        self.latent_dim = int(self.moments.outputs[0].shape[-1])
        self.trained = trained
        self.max_rows = max_rows
        self._encode = compiled(self._encode_eager)
        self._sample = compiled(self._sample_eager)

    def _encode_eager(self, images: Tensor, labels: Tensor | None) -> tuple[Tensor, ...]:
        """(z_mean, z_log_var, KL, mean squared error of the decoder's mean output at z = z_mean)."""
        z_mean, z_log_var = self.moments(self._with(images, labels), training=False)
        pixels = ops.sigmoid(self.logits(self._with(z_mean, labels), training=False))
        squared_error = ops.mean(ops.square(images - pixels), axis=-1)
        return z_mean, z_log_var, kl_loss(z_mean, z_log_var), squared_error

    @staticmethod
    def _with(first: Tensor, labels: Tensor | None) -> Tensor | list[Tensor]:
        return first if labels is None else [first, labels]

    def _sample_eager(self, images: Tensor, labels: Tensor | None, z_mean: Tensor, z_log_var: Tensor,
                      noise: Tensor) -> tuple[Tensor, Tensor]:
        """For noise (B, K, d): reconstruction loss and log importance weight of each z_k, each (B, K)."""
        batch, samples = noise.shape[0], noise.shape[1]
        z = z_mean[:, None, :] + ops.exp(0.5 * z_log_var)[:, None, :] * noise
        repeated = None if labels is None else ops.repeat(labels, samples, axis=0)  # row b·K + k is image b
        logits = self.logits(self._with(ops.reshape(z, (-1, self.latent_dim)), repeated), training=False)
        logits = ops.reshape(logits, (batch, samples, -1))
        reconstruction = reconstruction_loss(ops.broadcast_to(images[:, None, :], ops.shape(logits)), logits)
        # log N(z; 0, I) − log N(z; μ, σ²): the 2π terms cancel.
        log_prior_ratio = 0.5 * ops.sum(
            z_log_var[:, None, :] + ops.square(noise) - ops.square(z), axis=-1
        )
        return reconstruction, log_prior_ratio - reconstruction

    def _sampled_terms(self, images: np.ndarray, labels: Tensor | None, z_mean: Tensor, z_log_var: Tensor,
                       noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``_sample`` over chunks of samples of at most ``max_rows`` rows, padded to one shape."""
        count, samples, _ = noise.shape
        chunk = max(1, min(samples, self.max_rows // count))
        padded = math.ceil(samples / chunk) * chunk
        noise = np.pad(noise, ((0, 0), (0, padded - samples), (0, 0)))
        parts = [self._sample(images, labels, z_mean, z_log_var, noise[:, start : start + chunk])
                 for start in range(0, padded, chunk)]
        reconstruction, log_weights = (
            np.concatenate([ops.convert_to_numpy(part[i]) for part in parts], axis=1) for i in (0, 1)
        )
        return reconstruction[:, :samples], log_weights[:, :samples]

    def score(self, images: np.ndarray, elbo_samples: int, is_samples: int, batch_size: int,
              seed: int, labels: np.ndarray | None = None,
              on_batch: Callable[[int], object] = lambda count: None) -> ImageScores:
        """Per-image terms: ``elbo_samples`` draws for the reconstruction term, ``is_samples`` for −log p(x).

        A conditional model needs the class indices ``labels`` (n,) and then scores −log p(x | y);
        ``LabelError`` otherwise. The last partial batch is padded to ``batch_size`` so every call
        has one compiled shape. ``on_batch(count)`` hears of each batch's ``count`` images as it is done.
        """
        self.trained.check_labels(labels, len(images))
        count = len(images)
        batch_size = min(batch_size, count)
        onehot = None if labels is None else one_hot(labels, self.trained.num_classes)
        columns: dict[str, list[np.ndarray]] = {name: [] for name in ("z_mean", "kl", "se", "rec", "nll")}
        for start in range(0, count, batch_size):
            real = min(batch_size, count - start)
            batch = np.zeros((batch_size, images.shape[1]), dtype=np.float32)
            batch[:real] = images[start : start + real]
            batch_labels = None if onehot is None else ops.convert_to_tensor(_padded(onehot[start : start + real],
                                                                                      batch_size))
            z_mean, z_log_var, kl, squared_error = self._encode(ops.convert_to_tensor(batch), batch_labels)
            elbo_noise, is_noise = (
                np.pad(latent_noise(seed, stream, start, real, samples, self.latent_dim),
                       ((0, batch_size - real), (0, 0), (0, 0)))
                for stream, samples in ((ELBO_STREAM, elbo_samples), (IS_STREAM, is_samples))
            )
            reconstruction, _ = self._sampled_terms(batch, batch_labels, z_mean, z_log_var, elbo_noise)
            _, log_weights = self._sampled_terms(batch, batch_labels, z_mean, z_log_var, is_noise)
            columns["z_mean"].append(ops.convert_to_numpy(z_mean)[:real])
            columns["kl"].append(ops.convert_to_numpy(kl)[:real])
            columns["se"].append(ops.convert_to_numpy(squared_error)[:real])
            columns["rec"].append(reconstruction[:real].mean(axis=1, dtype=np.float64))
            columns["nll"].append(-log_mean_exp(log_weights[:real]))
            on_batch(real)
        joined = {name: np.concatenate(parts) for name, parts in columns.items()}
        return ImageScores(
            z_mean=joined["z_mean"],
            reconstruction_loss=joined["rec"],
            kl_loss=joined["kl"].astype(np.float64),
            nll_is=joined["nll"],
            squared_error=joined["se"].astype(np.float64),
        )


def _padded(rows: np.ndarray, count: int) -> np.ndarray:
    """``rows`` followed by zero rows up to ``count``."""
    return np.pad(rows, ((0, count - len(rows)), (0, 0)))
