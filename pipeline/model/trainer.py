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

from pipeline.core.errors import PipelineError
from pipeline.core.params import Params
from pipeline.data.datasets import DATASETS
from pipeline.model.checkpoints import EpochCheckpoint
from pipeline.model.loading import TrainedVae
from pipeline.model.losses import LOSS_NAMES, EpochLogs, kl_loss, reconstruction_loss
from pipeline.model.vae import LabelError, build_vae, one_hot

EVAL_BATCH_SIZE = 1000


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

    @classmethod
    def from_params(cls, params: Params) -> "TrainConfig":
        """The model and train sections of validated params (the MLflow experiment name aside).

        ``model.conditional`` becomes ``num_classes``: the label count of the dataset, or 0.
        """
        classes = len(DATASETS[params.data.dataset].class_names) if params.model.conditional else 0
        return cls(**params.model.model_dump(exclude={"conditional"}),
                   **params.train.model_dump(exclude={"experiment"}), num_classes=classes)


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """The Keras optimizer for a params name, with Keras' defaults otherwise (as the notebook)."""
    optimizers = {
        "rmsprop": keras.optimizers.RMSprop,
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
    }
    return optimizers[name](learning_rate=learning_rate)


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
        self.optimizer = make_optimizer(config.optimizer, config.learning_rate)
        self.optimizer.build(self.vae.trainable_variables)
        self._train_steps = tf.function(self._train_steps_eager, jit_compile=True)
        self._eval_batch = tf.function(self._losses, jit_compile=True)

    def _losses(self, images: tf.Tensor, labels: tf.Tensor | None = None) -> tuple[tf.Tensor, ...]:
        """Batch means of (loss, reconstruction_loss, kl_loss, neg_elbo); ``labels`` one-hot when conditional."""
        if labels is None:
            z_mean, z_log_var, z = self.encoder(images, training=True)
            logits = self.logits(z)
        else:
            z_mean, z_log_var, z = self.encoder([images, labels], training=True)
            logits = self.logits([z, labels])
        reconstruction = reconstruction_loss(images, logits)
        kl = kl_loss(z_mean, z_log_var)
        reconstruction, kl = tf.reduce_mean(reconstruction), tf.reduce_mean(kl)
        return reconstruction + self.config.beta * kl, reconstruction, kl, reconstruction + kl

    def _train_steps_eager(self, images: tf.Tensor, order: tf.Tensor, labels: tf.Tensor | None = None) -> tf.Tensor:
        """Run one optimizer step per row of ``order`` (batch indices); return the summed batch means."""
        variables = self.vae.trainable_variables

        def step(index: tf.Tensor, totals: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            batch = tf.gather(images, order[index])
            batch_labels = None if labels is None else tf.gather(labels, order[index])
            with tf.GradientTape() as tape:
                losses = self._losses(batch, batch_labels)
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
