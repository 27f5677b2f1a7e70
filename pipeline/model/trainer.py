"""What both training loops share: the config, the optimizer, the epoch's shuffle, checkpoints and the NaN stop.

Keras' ``fit`` pays Python and dispatch overhead on each of the 600 steps of an epoch; here the whole
epoch runs as one compiled program: gather the shuffled batch (and, for the conditional VAE, its one-hot
labels by the same indices), encode, sample, decode, compute the loss, apply the optimizer update. The
math is written once (``TrainedVae.training_view`` and ``losses.batch_losses``); only the compiled loop
differs per backend, in ``tf_loop`` (a ``tf.while_loop``) and ``jax_loop`` (``jax.lax.scan`` over the
Keras stateless API). ``make_trainer`` picks the one of the backend Keras runs on.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from pipeline.core.backend import Backend, BackendError
from pipeline.core.errors import PipelineError
from pipeline.core.params import Params
from pipeline.data.datasets import DATASETS
from pipeline.model.checkpoints import EpochCheckpoint
from pipeline.model.loading import TrainedVae
from pipeline.model.losses import LOSS_NAMES, EpochLogs, batch_losses
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
    backend: Backend = "tensorflow"
    """The Keras backend the loop runs on; it must be the one Keras was loaded with."""

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
    """Owns a VAE, its optimizer and the epoch loop; a subclass per backend compiles the steps.

    Subclasses implement ``_epoch_totals`` (one epoch's optimizer steps) and ``_eval_batch`` (the loss
    terms of one batch, one sampled z per image); the model and optimizer state live in the Keras
    variables between calls, so checkpoints, saving and the later stages see one kind of model.
    """

    def __init__(self, config: TrainConfig, vae: keras.Model | None = None) -> None:
        keras.utils.set_random_seed(config.seed)
        self.config = config
        self.vae = vae or build_vae(config.latent_dim, config.intermediate_dim, config.seed, config.num_classes)
        self.parts = TrainedVae(self.vae)
        if self.parts.num_classes != config.num_classes:
            raise LabelError(f"the model takes {self.parts.num_classes} classes, the config {config.num_classes}")
        self.view = self.parts.training_view
        self.optimizer = make_optimizer(config.optimizer, config.learning_rate)
        self.optimizer.build(self.view.trainable_variables)

    def _losses(self, images: object, labels: object | None = None) -> tuple:
        """Batch means of (loss, reconstruction_loss, kl_loss, neg_elbo), one sampled z per image; ``labels``
        one-hot when conditional. Both loops run this same forward pass and differentiate ``loss``: TensorFlow on
        the Keras variables, JAX inside a ``keras.StatelessScope`` that maps them to the values it carries."""
        z_mean, z_log_var, logits = self.view(self._inputs(images, labels), training=True)
        return batch_losses(images, z_mean, z_log_var, logits, self.config.beta)

    def _epoch_totals(self, images: object, full: np.ndarray | None, tail: np.ndarray | None,
                      labels: object | None) -> np.ndarray:
        """Take one optimizer step per row of ``full`` (batch indices, (steps, batch_size)) and one for ``tail``
        (the partial last batch's indices); return each ``LOSS_NAMES`` term summed over the images, (4,)."""
        raise NotImplementedError

    def _eval_batch(self, images: object, labels: object | None) -> np.ndarray:
        """Batch means of the ``LOSS_NAMES`` terms, (4,), one sampled z per image."""
        raise NotImplementedError

    @staticmethod
    def _inputs(images: object, labels: object | None) -> object:
        """The training view's input: images alone, or with one-hot labels."""
        return images if labels is None else [images, labels]

    def train_epoch(self, images: object, epoch: int, labels: object | None = None) -> EpochLogs:
        """One pass over ``images`` (and one-hot ``labels``) in a seeded shuffle; the last partial batch too."""
        count, size = int(images.shape[0]), self.config.batch_size
        shuffle = np.random.default_rng([self.config.seed, epoch]).permutation(count).astype(np.int32)
        full = count // size
        totals = self._epoch_totals(images, shuffle[: full * size].reshape(full, size) if full else None,
                                    shuffle[full * size :] if count % size else None, labels)
        return dict(zip(LOSS_NAMES, (totals / count).tolist(), strict=True))

    def evaluate(self, images: object, labels: np.ndarray | None = None) -> EpochLogs:
        """Loss terms averaged over ``images``, one sampled z per image; class ``labels`` (n,) when conditional."""
        onehot = self.label_inputs(labels, int(images.shape[0]))
        totals = np.zeros(len(LOSS_NAMES))
        for start in range(0, int(images.shape[0]), EVAL_BATCH_SIZE):
            batch = images[start : start + EVAL_BATCH_SIZE]
            batch_labels = None if onehot is None else onehot[start : start + EVAL_BATCH_SIZE]
            totals += self._eval_batch(batch, batch_labels) * int(batch.shape[0])
        return dict(zip(LOSS_NAMES, (totals / int(images.shape[0])).tolist(), strict=True))

    def label_inputs(self, labels: np.ndarray | None, count: int) -> object | None:
        """One-hot float32 labels (count, num_classes) for a conditional model, ``None`` for an unconditional one.

        Raises ``LabelError`` when labels are missing, superfluous, of another length or out of range.
        """
        self.parts.check_labels(labels, count)
        return None if labels is None else keras.ops.convert_to_tensor(one_hot(labels, self.config.num_classes))

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
        train = keras.ops.convert_to_tensor(train_images, dtype="float32")
        val = keras.ops.convert_to_tensor(val_images, dtype="float32")
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


def make_trainer(config: TrainConfig, vae: keras.Model | None = None) -> VaeTrainer:
    """The trainer of ``config.backend``, which must be the backend Keras was loaded with (``BackendError``)."""
    loaded = keras.backend.backend()
    if loaded != config.backend:
        raise BackendError(f"Keras runs on {loaded} in this process, the training config asks for {config.backend}")
    if config.backend == "jax":
        from pipeline.model.jax_loop import JaxTrainer

        return JaxTrainer(config, vae)
    from pipeline.model.tf_loop import TfTrainer

    return TfTrainer(config, vae)
