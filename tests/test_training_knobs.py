"""The training knobs inside the compiled epoch: the defaults train exactly as before the knobs existed, the
schedule and β change per step inside the XLA loop, and several draws of z or the IWAE bound train."""

import dataclasses
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from backends import BACKENDS, on_backend
from helpers import REPO_ROOT, synthetic_digits, without_timing

from pipeline.core.params import load_params
from pipeline.model.losses import kl_loss, reconstruction_loss
from pipeline.model.tf_loop import TfTrainer
from pipeline.model.trainer import TrainConfig, make_trainer

pytestmark = pytest.mark.integration  # every test compiles the XLA training loop

ROWS = 250  # two full batches of 100 and a partial one: both compiled shapes run


def shipped_config(**changes: object) -> TrainConfig:
    """params.yaml as shipped, on a small model and 2 epochs of ``ROWS`` images."""
    config = TrainConfig.from_params(load_params(REPO_ROOT / "params.yaml"), train_size=ROWS)
    return dataclasses.replace(config, intermediate_dim=32, epochs=2, **changes)


class BeforeTheKnobs(TfTrainer):
    """The trainer as it was before the knobs: Keras' RMSprop with only a learning rate, and the loss of one
    draw of z computed as it was then."""

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(config)
        self.optimizer = keras.optimizers.RMSprop(learning_rate=config.learning_rate)
        self.optimizer.build(self.vae.trainable_variables)

    def _losses(self, images: tf.Tensor, labels: tf.Tensor | None = None, beta: object = None) -> tuple:
        z_mean, z_log_var, z = self.encoder(images, training=True)
        reconstruction = tf.reduce_mean(reconstruction_loss(images, self.logits(z)))
        kl = tf.reduce_mean(kl_loss(z_mean, z_log_var))
        return reconstruction + self.config.beta * kl, reconstruction, kl, reconstruction + kl


def test_the_shipped_params_train_exactly_as_before_the_knobs_existed() -> None:
    train, _ = synthetic_digits(ROWS, seed=1)
    held_out, _ = synthetic_digits(100, seed=2)
    now = make_trainer(shipped_config()).fit(train, held_out)
    before = BeforeTheKnobs(shipped_config()).fit(train, held_out)
    assert without_timing(now) == without_timing(before)


def _fit(config: TrainConfig, train: np.ndarray, held_out: np.ndarray, **labels: np.ndarray) -> list[dict]:
    """The history of a fresh trainer of ``config`` (on ``config.backend``)."""
    return make_trainer(config).fit(train, held_out, **labels)


@pytest.mark.parametrize("backend", BACKENDS)
def test_beta_warmup_reaches_beta_within_the_compiled_loop_on_the_stated_epoch(backend: str) -> None:
    """Over a warm-up of one epoch the loss weighs the KL less than β; from epoch 2 on, by exactly β."""
    train, _ = synthetic_digits(ROWS, seed=1)
    held_out, _ = synthetic_digits(100, seed=2)
    config = shipped_config(beta=0.5, beta_warmup_epochs=1.0, backend=backend)
    first, second = on_backend(backend, _fit, config, train, held_out)
    assert first["loss"] < first["reconstruction_loss"] + 0.5 * first["kl_loss"] - 0.05 * first["kl_loss"]
    assert second["loss"] == pytest.approx(second["reconstruction_loss"] + 0.5 * second["kl_loss"], rel=1e-5)
    assert first["val_loss"] == pytest.approx(first["val_reconstruction_loss"] + 0.5 * first["val_kl_loss"],
                                              rel=1e-5), "validation always scores the target β"


def final_weights(config: TrainConfig, steps: str) -> np.ndarray:
    """All trainable weights after 2 epochs of ``ROWS`` images, the epoch's steps run as ``steps``: ``xla`` (the
    compiled loop), ``graph`` (the same traced loop without XLA) or ``eager`` (each step by Python, anew)."""
    trainer = TfTrainer(config)
    if steps != "xla":
        trainer._train_steps = (trainer._train_steps_eager if steps == "eager"
                                else tf.function(trainer._train_steps_eager))
    train = tf.constant(synthetic_digits(ROWS, seed=1)[0])
    for epoch in range(2):
        trainer.train_epoch(train, epoch)
    assert int(trainer.optimizer.iterations.numpy()) == 6
    return np.concatenate([np.ravel(variable.numpy()) for variable in trainer.vae.trainable_variables])


SGD = {"optimizer": "sgd", "learning_rate": 1e-3}  # no state of its own: every step is lr × gradient
CONSTANT = {"lr_schedule": "constant", "lr_warmup_epochs": 0.0, "lr_final_fraction": 0.0, "beta_warmup_epochs": 0.0}


@pytest.mark.parametrize("changes", [
    {"lr_schedule": "cosine", "lr_warmup_epochs": 0.5},
    {"lr_schedule": "exponential", "lr_final_fraction": 0.01},
    {"lr_warmup_epochs": 1.0, "beta_warmup_epochs": 2.0},
], ids=["cosine-warmup", "exponential", "warmups"])
def test_the_traced_epoch_loop_reads_the_rate_and_beta_at_every_step(changes: dict) -> None:
    """One traced ``tf.while_loop`` per epoch (the program XLA compiles) ends where Python's step-by-step run
    ends, which evaluates every step's rate and β anew; the constant rate ends elsewhere."""
    config = shipped_config(**SGD, **changes)
    traced, eager = final_weights(config, "graph"), final_weights(config, "eager")
    constant = final_weights(dataclasses.replace(config, **CONSTANT), "eager")
    assert np.max(np.abs(traced - eager)) < 1e-6
    assert np.max(np.abs(traced - constant)) > 1e-3


def test_the_compiled_epoch_follows_the_schedule() -> None:
    """XLA's arithmetic (and noise) differ slightly from TensorFlow's own kernels, so the compiled run lands near the
    eager one, far nearer than to the constant rate's, which a schedule read once per trace would give."""
    config = shipped_config(**SGD, lr_schedule="exponential", lr_final_fraction=1e-4)
    compiled, eager = final_weights(config, "xla"), final_weights(config, "eager")
    constant = final_weights(dataclasses.replace(config, **CONSTANT), "xla")
    assert np.max(np.abs(compiled - eager)) < 0.1 * np.max(np.abs(compiled - constant))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("changes", [{"z_samples": 4}, {"objective": "iwae", "z_samples": 5, "beta": 1.0}],
                         ids=["elbo-4-draws", "iwae-5"])
def test_several_draws_and_the_iwae_bound_train_repeatably_and_log_the_true_elbo(
    mnist_dir: Path, changes: dict, backend: str
) -> None:
    import gzip

    with gzip.open(mnist_dir / "train-images-idx3-ubyte.gz", "rb") as stream:
        stream.read(16)
        pixels = np.frombuffer(stream.read(1200 * 784), dtype=np.uint8)
    images = (pixels.reshape(1200, 784) / 255).astype(np.float32)
    train, held_out = images[:1000], images[1000:]
    config = dataclasses.replace(shipped_config(learning_rate=0.01, backend=backend, **changes), train_size=1000)
    history = on_backend(backend, _fit, config, train, held_out)
    again = on_backend(backend, _fit, config, train, held_out)
    assert without_timing(history) == without_timing(again)
    first, last = history
    assert last["neg_elbo"] < first["neg_elbo"] - 20
    assert last["neg_elbo"] == pytest.approx(last["reconstruction_loss"] + last["kl_loss"], rel=1e-5)
    if config.objective == "iwae":
        assert last["loss"] < last["neg_elbo"], "the importance-weighted bound is tighter than the ELBO"
        assert last["val_loss"] < last["val_neg_elbo"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_conditional_vae_draws_z_several_times_with_its_labels(backend: str) -> None:
    """Each extra draw of z is decoded under its own image's label: the IWAE bound then beats the ELBO."""
    train, train_labels = synthetic_digits(ROWS, seed=1)
    held_out, held_out_labels = synthetic_digits(100, seed=2)
    config = shipped_config(num_classes=10, objective="iwae", z_samples=3, beta=1.0, learning_rate=0.01,
                            backend=backend)
    history = on_backend(backend, _fit, config, train, held_out, train_labels=train_labels,
                         val_labels=held_out_labels)
    assert all(np.isfinite(value) for logs in history for value in logs.values())
    assert history[-1]["val_loss"] < history[-1]["val_neg_elbo"]
