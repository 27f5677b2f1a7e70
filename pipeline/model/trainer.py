"""The compiled training loop: one XLA program per epoch, no Python work per batch.

Keras' ``fit`` pays Python and dispatch overhead on each of the 600 steps of an epoch; here a
``tf.while_loop`` inside one ``jit_compile=True`` function runs the whole epoch: gather the
shuffled batch (and, for the conditional VAE, its one-hot labels by the same indices), encode,
sample, decode, compute the loss, apply the optimizer update.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from pipeline.core.errors import PipelineError
from pipeline.core.params import IMAGE_PIXELS, Params, TrainParams
from pipeline.data.datasets import DATASETS
from pipeline.model.checkpoints import EpochCheckpoint
from pipeline.model.loading import TrainedVae
from pipeline.model.losses import LOSS_NAMES, EpochLogs
from pipeline.model.objective import batch_objective, kl_weight, more_draws
from pipeline.model.optimizers import make_optimizer, steps_in
from pipeline.model.vae import LabelError, build_vae, one_hot

EVAL_BATCH_SIZE = 1000
_DEFAULT = TrainParams()


class TrainingDivergedError(PipelineError):
    """The loss became NaN or infinite; the weights are no longer usable."""


@dataclass(frozen=True)
class TrainConfig:
    """What the loop needs from params, with nothing else attached."""

    latent_dim: int
    intermediate_dim: int
    epochs: int
    batch_size: int
    optimizer: str
    learning_rate: float
    beta: float
    seed: int
    num_classes: int = 0
    """Size of the one-hot label input of the conditional VAE; 0 trains the unconditional one."""
    train_size: int | None = None
    """Training images per epoch, which turn the warm-ups' and schedule's epochs into optimizer steps;
    ``None`` only while nothing is counted in epochs."""
    rmsprop_rho: float = _DEFAULT.rmsprop_rho
    rmsprop_momentum: float = _DEFAULT.rmsprop_momentum
    rmsprop_epsilon: float = _DEFAULT.rmsprop_epsilon
    adam_beta_1: float = _DEFAULT.adam_beta_1
    adam_beta_2: float = _DEFAULT.adam_beta_2
    adam_epsilon: float = _DEFAULT.adam_epsilon
    lr_schedule: str = _DEFAULT.lr_schedule
    lr_warmup_epochs: float = _DEFAULT.lr_warmup_epochs
    lr_final_fraction: float = _DEFAULT.lr_final_fraction
    beta_warmup_epochs: float = _DEFAULT.beta_warmup_epochs
    objective: str = _DEFAULT.objective
    z_samples: int = _DEFAULT.z_samples

    @classmethod
    def from_params(cls, params: Params, train_size: int | None = None) -> "TrainConfig":
        """The model and train sections of validated params (the MLflow experiment name aside).

        ``model.conditional`` becomes ``num_classes``: the label count of the dataset, or 0.
        """
        classes = len(DATASETS[params.data.dataset].class_names) if params.model.conditional else 0
        return cls(**params.model.model_dump(exclude={"conditional"}),
                   **params.train.model_dump(exclude={"experiment"}), num_classes=classes, train_size=train_size)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch; ``ValueError`` when ``train_size`` is unknown."""
        if self.train_size is None:
            raise ValueError("train_size is needed to count the warm-ups and the schedule in steps")
        return math.ceil(self.train_size / self.batch_size)  # every full batch and the last partial one

    @property
    def counts_epochs_in_steps(self) -> bool:
        """Whether a warm-up or the learning-rate schedule needs ``steps_per_epoch``."""
        return bool(self.lr_schedule != "constant" or self.lr_warmup_epochs or self.beta_warmup_epochs)


class VaeTrainer:
    """Owns a VAE, its optimizer and the compiled epoch functions."""

    def __init__(self, config: TrainConfig, vae: keras.Model | None = None) -> None:
        keras.utils.set_random_seed(config.seed)
        self.config = config
        self.vae = vae or build_vae(config.latent_dim, config.intermediate_dim, config.seed, config.num_classes)
        self.parts = TrainedVae(self.vae)
        if self.parts.num_classes != config.num_classes:
            raise LabelError(f"the model takes {self.parts.num_classes} classes, the config {config.num_classes}")
        self.encoder, self.logits = self.parts.encoder, self.parts.decoder_logits
        steps = config.steps_per_epoch if config.counts_epochs_in_steps else 1
        self.optimizer = make_optimizer(config, steps)
        self.beta_warmup_steps = steps_in(config.beta_warmup_epochs, steps)
        self.optimizer.build(self.vae.trainable_variables)
        self._train_steps = tf.function(self._train_steps_eager, jit_compile=True)
        self._eval_batch = tf.function(self._losses, jit_compile=True)

    def _losses(self, images: tf.Tensor, labels: tf.Tensor | None = None,
                beta: tf.Tensor | float | None = None) -> tuple[tf.Tensor, ...]:
        """Batch means of (loss, reconstruction_loss, kl_loss, neg_elbo) over ``config.z_samples`` draws of z per
        image; ``labels`` one-hot when conditional; ``beta`` the KL weight of this step (``config.beta`` if None)."""
        samples = self.config.z_samples
        z_mean, z_log_var, z = self.encoder(images if labels is None else [images, labels], training=True)
        z = more_draws(self.encoder.get_layer("z"), z, z_mean, z_log_var, samples)
        flat_z = ops.reshape(z, (-1, self.config.latent_dim))
        logits = self.logits(flat_z if labels is None else [flat_z, ops.tile(labels, (samples, 1))])
        logits = ops.reshape(logits, (samples, -1, IMAGE_PIXELS))
        return batch_objective(images, logits, z, z_mean, z_log_var, self.config.beta if beta is None else beta,
                               importance_weighted=self.config.objective == "iwae")

    def _train_steps_eager(self, images: tf.Tensor, order: tf.Tensor, labels: tf.Tensor | None = None) -> tf.Tensor:
        """Run one optimizer step per row of ``order`` (batch indices); return the summed batch means."""
        variables = self.vae.trainable_variables

        def step(index: tf.Tensor, totals: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            batch = tf.gather(images, order[index])
            batch_labels = None if labels is None else tf.gather(labels, order[index])
            beta = kl_weight(self.optimizer.iterations, self.config.beta, self.beta_warmup_steps)
            with tf.GradientTape() as tape:
                losses = self._losses(batch, batch_labels, beta)
            self.optimizer.apply(tape.gradient(losses[0], variables), variables)
            return index + 1, totals + tf.stack(losses)

        steps = tf.shape(order)[0]
        _, totals = tf.while_loop(
            lambda index, _: index < steps, step, (tf.constant(0), tf.zeros(len(LOSS_NAMES)))
        )
        return totals

    def train_epoch(self, images: tf.Tensor, epoch: int, labels: tf.Tensor | None = None) -> EpochLogs:
        """One pass over ``images`` (and one-hot ``labels``) in a seeded shuffle; the last partial batch too."""
        count, size = int(images.shape[0]), self.config.batch_size
        shuffle = np.random.default_rng([self.config.seed, epoch]).permutation(count).astype(np.int32)
        full = count // size
        totals = np.zeros(len(LOSS_NAMES))
        if full:
            totals += self._train_steps(images, shuffle[: full * size].reshape(full, size), labels).numpy() * size
        if count % size:
            tail = shuffle[full * size :].reshape(1, -1)
            totals += self._train_steps(images, tail, labels).numpy() * tail.shape[1]
        return dict(zip(LOSS_NAMES, (totals / count).tolist(), strict=True))

    def evaluate(self, images: tf.Tensor, labels: np.ndarray | None = None) -> EpochLogs:
        """Loss terms averaged over ``images``, one sampled z per image; class ``labels`` (n,) when conditional."""
        onehot = self.label_inputs(labels, int(images.shape[0]))
        totals = np.zeros(len(LOSS_NAMES))
        for start in range(0, int(images.shape[0]), EVAL_BATCH_SIZE):
            batch = images[start : start + EVAL_BATCH_SIZE]
            batch_labels = None if onehot is None else onehot[start : start + EVAL_BATCH_SIZE]
            values = self._eval_batch(batch, batch_labels)
            totals += np.array([float(value) for value in values]) * int(batch.shape[0])
        return dict(zip(LOSS_NAMES, (totals / int(images.shape[0])).tolist(), strict=True))

    def label_inputs(self, labels: np.ndarray | None, count: int) -> tf.Tensor | None:
        """One-hot float32 labels (count, num_classes) for a conditional model, ``None`` for an unconditional one.

        Raises ``LabelError`` when labels are missing, superfluous, of another length or out of range.
        """
        self.parts.check_labels(labels, count)
        return None if labels is None else tf.constant(one_hot(labels, self.config.num_classes))

    def fit(
        self,
        train_images: np.ndarray,
        val_images: np.ndarray,
        on_epoch_end: Callable[[int, EpochLogs], None] = lambda epoch, logs: None,
        checkpoint: EpochCheckpoint | None = None,
        train_labels: np.ndarray | None = None,
        val_labels: np.ndarray | None = None,
    ) -> list[EpochLogs]:
        """Train for the configured epochs; ``on_epoch_end(epoch, logs)`` sees train and ``val_`` terms.

        A conditional config needs the class indices (n,) of both sets, an unconditional one none.
        With a ``checkpoint``, the state is saved after every epoch and a matching earlier
        checkpoint is resumed first; the returned history then includes the resumed epochs.
        Raises ``TrainingDivergedError`` as soon as an epoch ends with a non-finite loss, and
        ``LabelError`` (before any work) for missing, superfluous or out-of-range labels.
        """
        if self.config.train_size is not None and len(train_images) != self.config.train_size:
            raise ValueError(f"{len(train_images)} training images, but the config counts {self.config.train_size}")
        train_onehot = self.label_inputs(train_labels, len(train_images))
        self.label_inputs(val_labels, len(val_images))
        train = tf.constant(train_images, dtype=tf.float32)
        val = tf.constant(val_images, dtype=tf.float32)
        state = [*self.vae.variables, *self.optimizer.variables]
        history = checkpoint.restore(state) if checkpoint else []
        for epoch in range(len(history), self.config.epochs):
            started = time.perf_counter()
            logs = self.train_epoch(train, epoch, train_onehot)
            if not all(math.isfinite(value) for value in logs.values()):
                raise TrainingDivergedError(
                    f"loss became {logs['loss']} in epoch {epoch + 1}; lower train.learning_rate "
                    f"(now {self.config.learning_rate}) or check the data"
                )
            logs |= {f"val_{name}": value for name, value in self.evaluate(val, val_labels).items()}
            logs["seconds"] = time.perf_counter() - started
            history.append(logs)
            if checkpoint:
                checkpoint.save(state, history)
            on_epoch_end(epoch, logs)
        return history
