"""The per-image loss terms, in ``keras.ops`` (their names, as every log and table uses them, are
``pipeline.core.metrics.LOSS_NAMES``).

Losses are summed over pixels per image and averaged over a batch by the caller (as keras-io's
VAE example and the notebook: 784 · mean BCE is the pixel sum).
"""

from keras import ops

from pipeline.model.tensors import Tensor


def reconstruction_loss(images: Tensor, logits: Tensor) -> Tensor:
    """Binary cross-entropy summed over pixels, per image (the notebook's 784 · mean BCE).

    Computed from logits, so saturated pixels give finite values and gradients.
    """
    return ops.sum(ops.binary_crossentropy(images, logits, from_logits=True), axis=-1)


def kl_loss(z_mean: Tensor, z_log_var: Tensor) -> Tensor:
    """KL(q(z|x) || N(0, I)) per image: 0.5 · Σ(exp(log σ²) + μ² − 1 − log σ²)."""
    return 0.5 * ops.sum(ops.exp(z_log_var) + ops.square(z_mean) - 1.0 - z_log_var, axis=-1)
