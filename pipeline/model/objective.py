"""The training objective on a batch: k draws of z per image, the ELBO or the IWAE bound, and β at a step.

Backend-neutral ``keras.ops``, so every compiled training loop computes the same numbers. Shapes: images
(B, 784); z_mean and z_log_var (B, d); k draws z (k, B, d) and their decoder logits (k, B, 784), draw-major.
The logged terms stay those of the ELBO whatever the objective (``reconstruction_loss`` averaged over the k
draws, the analytic ``kl_loss``, ``neg_elbo`` their sum), so runs with any objective compare on ``neg_elbo``.
"""

from collections.abc import Callable

from keras import ops

from pipeline.model.losses import kl_loss, reconstruction_loss
from pipeline.model.tensors import Tensor


def more_draws(sampling: Callable[[list[Tensor]], Tensor], z: Tensor, z_mean: Tensor, z_log_var: Tensor,
               samples: int) -> Tensor:
    """``samples`` draws (k, B, d) of z ~ q(z|x): the encoder's own draw ``z`` (B, d), then k − 1 more from its
    ``Sampling`` layer and noise stream, so one draw is exactly what the encoder alone gives."""
    if samples > 1:
        repeats = (samples - 1, 1)
        z = ops.concatenate([z, sampling([ops.tile(z_mean, repeats), ops.tile(z_log_var, repeats)])], axis=0)
    return ops.reshape(z, (samples, -1, ops.shape(z_mean)[-1]))


def kl_weight(step: Tensor, beta: float, warmup_steps: int) -> Tensor:
    """β at optimizer step ``step`` (counted from 0) under KL annealing: β · min(1, (step + 1) / warmup_steps),
    so the last warm-up step trains with β (linear warm-up, Sønderby et al. 2016); ``warmup_steps`` 0 gives β."""
    if not warmup_steps:
        return beta
    return beta * ops.minimum(1.0, (ops.cast(step, "float32") + 1.0) / warmup_steps)


def log_importance_weights(reconstruction: Tensor, z: Tensor, z_mean: Tensor, z_log_var: Tensor) -> Tensor:
    """log p(x|z) + log p(z) − log q(z|x) per draw, (k, B), from reconstruction losses (k, B) and draws (k, B, d).

    With ε = (z − μ) / σ: log N(z; 0, I) − log N(z; μ, σ²) = ½ Σ (log σ² + ε² − z²); the 2π terms cancel.
    """
    noise = (z - z_mean) * ops.exp(-0.5 * z_log_var)
    return 0.5 * ops.sum(z_log_var + ops.square(noise) - ops.square(z), axis=-1) - reconstruction


def batch_objective(images: Tensor, logits: Tensor, z: Tensor, z_mean: Tensor, z_log_var: Tensor,
                    beta: Tensor = 1.0, importance_weighted: bool = False) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Batch means of (loss, reconstruction_loss, kl_loss, neg_elbo), in nats per image.

    ``loss`` is the ELBO's ``reconstruction + β · KL`` with the reconstruction averaged over the k draws, or, when
    ``importance_weighted``, the negative IWAE bound −log (1/k) Σ_k w_k (Burda, Grosse and
    Salakhutdinov 2015), which has no β; with k = 1 both are the ELBO, estimated with an analytic and a sampled KL.
    """
    reconstruction = reconstruction_loss(ops.broadcast_to(images, ops.shape(logits)), logits)
    mean_reconstruction = ops.mean(reconstruction)  # over draws and images alike: every image has k draws
    kl = ops.mean(kl_loss(z_mean, z_log_var))
    if importance_weighted:
        samples = ops.shape(logits)[0]
        log_weights = log_importance_weights(reconstruction, z, z_mean, z_log_var)
        bound = ops.logsumexp(log_weights, axis=0) - ops.log(ops.cast(samples, "float32"))
        loss = -ops.mean(bound)
    else:
        loss = mean_reconstruction + beta * kl
    return loss, mean_reconstruction, kl, mean_reconstruction + kl

