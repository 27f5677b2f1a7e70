"""The compiled training loop: it learns, repeats itself under a seed, trains every row and stops on NaN."""

import dataclasses
import gzip
import math
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import without_timing

from pipeline.core.errors import PipelineError
from pipeline.model.losses import LOSS_NAMES
from pipeline.model.trainer import TrainConfig, TrainingDivergedError, VaeTrainer
from pipeline.model.vae import IMAGE_PIXELS, build_vae

pytestmark = pytest.mark.slow  # every test compiles the XLA training loop

BASE = TrainConfig(
    latent_dim=2, intermediate_dim=32, epochs=1, batch_size=100, optimizer="rmsprop",
    learning_rate=1e-3, beta=0.25, seed=0,
)


def config(**changes: object) -> TrainConfig:
    return dataclasses.replace(BASE, **changes)


def synthetic_images(rows: int, seed: int = 0) -> np.ndarray:
    """Sparse images in [0, 1], about a fifth of the pixels lit, like digits."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random((rows, IMAGE_PIXELS)) < 0.2, rng.uniform(0.5, 1.0), 0.0).astype(np.float32)



@pytest.fixture(scope="module")
def mnist_subset(mnist_dir: Path) -> np.ndarray:
    """The first 2 000 real training images, read straight from the IDX file: 16-byte header, then pixels."""
    rows = 2000
    with gzip.open(mnist_dir / "train-images-idx3-ubyte.gz", "rb") as stream:
        stream.read(16)
        pixels = np.frombuffer(stream.read(rows * IMAGE_PIXELS), dtype=np.uint8)
    return (pixels.reshape(rows, IMAGE_PIXELS) / 255).astype(np.float32)


def test_one_epoch_on_real_mnist_lowers_the_loss(mnist_subset: np.ndarray) -> None:
    train, held_out = mnist_subset[:1500], mnist_subset[1500:]
    trainer = VaeTrainer(config(intermediate_dim=64))
    before = trainer.evaluate(held_out)
    (logs,) = trainer.fit(train, held_out)
    after = trainer.evaluate(held_out)
    assert before["loss"] > 500, "an untrained decoder gives about 784·ln 2 ≈ 543 nats"
    assert after["loss"] < 0.8 * before["loss"] and logs["val_loss"] < 0.8 * before["loss"]
    assert after["reconstruction_loss"] < before["reconstruction_loss"] - 100


def test_same_config_and_data_give_the_same_epoch_logs() -> None:
    train, val = synthetic_images(200, seed=1), synthetic_images(100, seed=2)
    first = VaeTrainer(config(epochs=2, seed=5)).fit(train, val)
    second = VaeTrainer(config(epochs=2, seed=5)).fit(train, val)
    other = VaeTrainer(config(epochs=2, seed=6)).fit(train, val)
    assert len(first) == 2
    for mine, theirs in zip(without_timing(first), without_timing(second), strict=True):
        assert mine == pytest.approx(theirs, rel=1e-6, abs=1e-6)
    assert without_timing(other)[1]["loss"] != pytest.approx(without_timing(first)[1]["loss"], rel=1e-6)


@pytest.mark.parametrize(("rows", "batch_size", "steps"), [(250, 100, 3), (5, 1, 5)])
def test_every_batch_including_the_partial_last_one_takes_an_optimizer_step(
    rows: int, batch_size: int, steps: int
) -> None:
    trainer = VaeTrainer(config(batch_size=batch_size))
    initial = [variable.numpy().copy() for variable in trainer.vae.trainable_variables]
    (logs,) = trainer.fit(synthetic_images(rows), synthetic_images(10, seed=3))
    assert int(trainer.optimizer.iterations.numpy()) == steps
    assert all(np.isfinite(value) for value in logs.values())
    changed = [not np.array_equal(before, variable.numpy())
               for before, variable in zip(initial, trainer.vae.trainable_variables, strict=True)]
    assert all(changed)


@pytest.mark.parametrize(("rows", "batch_size"), [(250, 100), (30, 100)])
def test_epoch_logs_weight_every_row_once_including_the_partial_batch(rows: int, batch_size: int) -> None:
    """With no weight change and (almost) no sampling noise, the epoch average equals ``evaluate``.

    Averaging batch means with equal weights, or dropping the tail, would miss by far more than 1e-5.
    """
    vae = build_vae(BASE.latent_dim, BASE.intermediate_dim, seed=0)
    z_log_var = vae.get_layer("encoder").get_layer("z_log_var")
    kernel, bias = z_log_var.get_weights()
    z_log_var.set_weights([np.zeros_like(kernel), np.full_like(bias, -30.0)])  # sigma = e^-15
    trainer = VaeTrainer(config(batch_size=batch_size, optimizer="sgd", learning_rate=0.0), vae=vae)
    images = synthetic_images(rows, seed=4)
    images[: rows // 2] *= 0.1  # rows of very different losses, so weighting errors show
    (logs,) = trainer.fit(images, images[:1])
    assert int(trainer.optimizer.iterations.numpy()) == math.ceil(rows / batch_size)
    expected = trainer.evaluate(images)
    assert {name: logs[name] for name in LOSS_NAMES} == pytest.approx(expected, rel=1e-5)


def test_a_huge_learning_rate_raises_training_diverged() -> None:
    reported: list[dict[str, float]] = []
    trainer = VaeTrainer(config(learning_rate=1e6, epochs=4))
    with pytest.raises(TrainingDivergedError) as raised:
        trainer.fit(synthetic_images(200), synthetic_images(10), lambda epoch, logs: reported.append(logs))
    message = str(raised.value)
    assert re.fullmatch(r"loss became (nan|-?inf) in epoch \d; lower train\.learning_rate \(now 1000000\.0\) "
                        r"or check the data", message), message
    diverged_epoch = int(re.search(r"epoch (\d)", message).group(1))
    assert len(reported) == diverged_epoch - 1, "the epoch with a non-finite loss is not reported as finished"
    assert all(np.isfinite(logs["loss"]) for logs in reported)
    assert isinstance(raised.value, PipelineError)


def test_nan_in_the_data_raises_training_diverged() -> None:
    images = synthetic_images(200)
    images[17, 3] = np.nan
    with pytest.raises(TrainingDivergedError, match="loss became nan.*check the data"):
        VaeTrainer(config()).fit(images, synthetic_images(10))


def test_logs_hold_every_loss_term_for_train_and_val_and_they_add_up() -> None:
    beta = BASE.beta
    trainer = VaeTrainer(config(epochs=1))
    (logs,) = trainer.fit(synthetic_images(200), synthetic_images(50, seed=5))
    assert set(logs) == {*LOSS_NAMES, *(f"val_{name}" for name in LOSS_NAMES), "seconds"}
    evaluated = trainer.evaluate(synthetic_images(1500, seed=6))  # two evaluation batches, the last partial
    for terms in (evaluated, logs, {name: logs[f"val_{name}"] for name in LOSS_NAMES}):
        assert terms["neg_elbo"] == pytest.approx(terms["reconstruction_loss"] + terms["kl_loss"], rel=1e-6)
        assert terms["loss"] == pytest.approx(terms["reconstruction_loss"] + beta * terms["kl_loss"], rel=1e-6)
    assert evaluated["kl_loss"] > 0 and evaluated["neg_elbo"] > evaluated["loss"]
