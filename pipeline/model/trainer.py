"""What both training loops share: the config, the optimizer, the objective, the epoch's shuffle, checkpoints
and the NaN stop.

Keras' ``fit`` pays Python and dispatch overhead on each of the 600 steps of an epoch; here the whole
epoch runs as one compiled program: gather the shuffled batch (and, for the conditional VAE, its one-hot
labels by the same indices), encode, sample, decode, compute the loss, apply the optimizer update. The
forward pass and objective are written once (``VaeTrainer._losses``, ``keras.ops``); only the compiled loop
differs per backend, in ``tf_loop`` (a ``tf.while_loop``) and ``jax_loop`` (``jax.lax.scan`` over the
Keras stateless API). ``make_trainer`` picks the one of the backend Keras runs on.
"""

import abc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from pipeline.core.backend import Backend, BackendError
from pipeline.core.errors import PipelineError
from pipeline.core.metrics import LOSS_NAMES, EpochLogs
from pipeline.core.param_sections import IMAGE_PIXELS, TrainParams
from pipeline.core.params import Params
from pipeline.data.datasets import DATASETS
from pipeline.model.checkpoints import EpochCheckpoint
from pipeline.model.objective import batch_objective, kl_weight, more_draws
from pipeline.model.optimizers import make_optimizer, steps_in
from pipeline.model.tensors import Tensor
from pipeline.model.trained_vae import TrainedVae
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
    backend: Backend = _DEFAULT.backend
    """The Keras backend the loop runs on; it must be the one Keras was loaded with."""

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


class VaeTrainer(abc.ABC):
    """Owns a VAE, its optimizer and the epoch loop; a subclass per backend compiles the steps.

    Subclasses implement ``_epoch_totals`` (one epoch's optimizer steps) and ``_eval_batch`` (the loss
    terms of one batch); the model and optimizer state live in the Keras variables between calls, so
    checkpoints, saving and the later stages see one kind of model.
    """

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

    def _losses(self, images: Tensor, labels: Tensor | None = None,
                beta: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Batch means of (loss, reconstruction_loss, kl_loss, neg_elbo) over ``config.z_samples`` draws of z per
        image; ``labels`` one-hot when conditional; ``beta`` the KL weight of this step (``config.beta`` if None).

        Both loops run this one forward pass and differentiate ``loss``: TensorFlow on the Keras variables, JAX
        inside a ``keras.StatelessScope`` that maps them to the values it carries."""
        samples = self.config.z_samples
        z_mean, z_log_var, z = self.encoder(images if labels is None else [images, labels], training=True)
        z = more_draws(self.encoder.get_layer("z"), z, z_mean, z_log_var, samples)
        flat_z = ops.reshape(z, (-1, self.config.latent_dim))
        logits = self.logits(flat_z if labels is None else [flat_z, ops.tile(labels, (samples, 1))])
        logits = ops.reshape(logits, (samples, -1, IMAGE_PIXELS))
        return batch_objective(images, logits, z, z_mean, z_log_var, self.config.beta if beta is None else beta,
                               importance_weighted=self.config.objective == "iwae")

    @abc.abstractmethod
    def _epoch_totals(self, images: Tensor, full: np.ndarray | None, tail: np.ndarray | None,
                      labels: Tensor | None) -> np.ndarray:
        """Take one optimizer step per row of ``full`` (batch indices, (steps, batch_size)) and one for ``tail``
        (the partial last batch's indices); return each ``LOSS_NAMES`` term summed over the images, (4,)."""

    @abc.abstractmethod
    def _eval_batch(self, images: Tensor, labels: Tensor | None) -> np.ndarray:
        """Batch means of the ``LOSS_NAMES`` terms, (4,), one sampled z per image."""

    def _step_beta(self) -> Tensor:
        """β of the optimizer step about to be taken (KL warm-up), read from ``optimizer.iterations``."""
        return kl_weight(self.optimizer.iterations, self.config.beta, self.beta_warmup_steps)

    def train_epoch(self, images: Tensor, epoch: int, labels: Tensor | None = None) -> EpochLogs:
        """One pass over ``images`` (and one-hot ``labels``) in a seeded shuffle; the last partial batch too."""
        count, size = int(images.shape[0]), self.config.batch_size
        shuffle = np.random.default_rng([self.config.seed, epoch]).permutation(count).astype(np.int32)
        full = count // size
        totals = self._epoch_totals(images, shuffle[: full * size].reshape(full, size) if full else None,
                                    shuffle[full * size :] if count % size else None, labels)
        return dict(zip(LOSS_NAMES, (totals / count).tolist(), strict=True))

    def evaluate(self, images: Tensor, labels: np.ndarray | None = None) -> EpochLogs:
        """Loss terms averaged over ``images``, one sampled z per image; class ``labels`` (n,) when conditional."""
        onehot = self.label_inputs(labels, int(images.shape[0]))
        totals = np.zeros(len(LOSS_NAMES))
        for start in range(0, int(images.shape[0]), EVAL_BATCH_SIZE):
            batch = images[start : start + EVAL_BATCH_SIZE]
            batch_labels = None if onehot is None else onehot[start : start + EVAL_BATCH_SIZE]
            totals += self._eval_batch(batch, batch_labels) * int(batch.shape[0])
        return dict(zip(LOSS_NAMES, (totals / int(images.shape[0])).tolist(), strict=True))

    def label_inputs(self, labels: np.ndarray | None, count: int) -> Tensor | None:
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
        if self.config.train_size is not None and len(train_images) != self.config.train_size:
            raise ValueError(f"{len(train_images)} training images, but the config counts {self.config.train_size}")
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
