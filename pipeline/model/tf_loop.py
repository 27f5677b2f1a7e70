"""The TensorFlow training loop: a ``tf.while_loop`` of optimizer steps inside one XLA-compiled function.

Each step runs the shared forward pass and loss (``VaeTrainer._losses``) under a ``GradientTape`` and
applies the optimizer to the Keras variables in place; the Sampling layer's seed state advances as a
variable too.
"""

import keras
import numpy as np
import tensorflow as tf

from pipeline.core.metrics import LOSS_NAMES
from pipeline.model.compiled import compiled
from pipeline.model.trainer import TrainConfig, VaeTrainer


class TfTrainer(VaeTrainer):
    """``VaeTrainer`` on TensorFlow: one compiled call per run of full batches, one for the partial last batch."""

    def __init__(self, config: TrainConfig, vae: keras.Model | None = None) -> None:
        super().__init__(config, vae)
        self._train_steps = compiled(self._train_steps_eager)
        self._eval_losses = compiled(self._losses)

    def _train_steps_eager(self, images: tf.Tensor, order: tf.Tensor, labels: tf.Tensor | None = None) -> tf.Tensor:
        """Run one optimizer step per row of ``order`` (batch indices); return the summed batch means."""
        variables = self.vae.trainable_variables

        def step(index: tf.Tensor, totals: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            batch = tf.gather(images, order[index])
            batch_labels = None if labels is None else tf.gather(labels, order[index])
            beta = self._step_beta()
            with tf.GradientTape() as tape:
                losses = self._losses(batch, batch_labels, beta)
            self.optimizer.apply(tape.gradient(losses[0], variables), variables)
            return index + 1, totals + tf.stack(losses)

        steps = tf.shape(order)[0]
        _, totals = tf.while_loop(
            lambda index, _: index < steps, step, (tf.constant(0), tf.zeros(len(LOSS_NAMES)))
        )
        return totals

    def _epoch_totals(self, images: tf.Tensor, full: np.ndarray | None, tail: np.ndarray | None,
                      labels: tf.Tensor | None) -> np.ndarray:
        totals = np.zeros(len(LOSS_NAMES))
        if full is not None:
            totals += self._train_steps(images, full, labels).numpy() * full.shape[1]
        if tail is not None:
            totals += self._train_steps(images, tail.reshape(1, -1), labels).numpy() * tail.shape[0]
        return totals

    def _eval_batch(self, images: tf.Tensor, labels: tf.Tensor | None) -> np.ndarray:
        return np.array([float(value) for value in self._eval_losses(images, labels)])
