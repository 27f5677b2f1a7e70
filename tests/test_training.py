"""The compiled training loops, on each backend: they learn, repeat themselves under a seed, train every row
and stop on NaN. The work runs on the backend's worker (tests/backends.py) and the assertions here."""

import dataclasses
import gzip
import math
import re
from pathlib import Path

import numpy as np
import pytest
from backends import BACKENDS, on_backend
from helpers import without_timing

from pipeline.core.errors import PipelineError
from pipeline.core.metrics import LOSS_NAMES
from pipeline.model.trainer import TrainConfig, TrainingDivergedError, make_trainer
from pipeline.model.vae import IMAGE_PIXELS, build_vae

# every test compiles a training loop
pytestmark = [pytest.mark.integration, pytest.mark.parametrize("backend", BACKENDS)]

BASE = TrainConfig(
    latent_dim=2, intermediate_dim=32, epochs=1, batch_size=100, optimizer="rmsprop",
    learning_rate=1e-3, beta=0.25, seed=0,
)


def config(backend: str, **changes: object) -> TrainConfig:
    return dataclasses.replace(BASE, backend=backend, **changes)


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


def _before_epoch_after(backend: str, train: np.ndarray, held_out: np.ndarray) -> tuple[dict, dict, dict]:
    trainer = make_trainer(config(backend, intermediate_dim=64))
    before = trainer.evaluate(held_out)
    (logs,) = trainer.fit(train, held_out)
    return before, logs, trainer.evaluate(held_out)


def test_one_epoch_on_real_mnist_lowers_the_loss(backend: str, mnist_subset: np.ndarray) -> None:
    before, logs, after = on_backend(backend, _before_epoch_after, backend, mnist_subset[:1500], mnist_subset[1500:])
    assert before["loss"] > 500, "an untrained decoder gives about 784·ln 2 ≈ 543 nats"
    assert after["loss"] < 0.8 * before["loss"] and logs["val_loss"] < 0.8 * before["loss"]
    assert after["reconstruction_loss"] < before["reconstruction_loss"] - 100


def _histories(backend: str, seeds: tuple[int, ...], train: np.ndarray, val: np.ndarray) -> list[list[dict]]:
    return [without_timing(make_trainer(config(backend, epochs=2, seed=seed)).fit(train, val)) for seed in seeds]


def test_same_config_and_data_give_the_same_epoch_logs(backend: str) -> None:
    first, second, other = on_backend(backend, _histories, backend, (5, 5, 6), synthetic_images(200, seed=1),
                                      synthetic_images(100, seed=2))
    assert len(first) == 2
    for mine, theirs in zip(first, second, strict=True):
        assert mine == pytest.approx(theirs, rel=1e-6, abs=1e-6)
    assert other[1]["loss"] != pytest.approx(first[1]["loss"], rel=1e-6)


def _steps_taken(backend: str, rows: int, batch_size: int) -> tuple[int, dict, list[bool]]:
    trainer = make_trainer(config(backend, batch_size=batch_size))
    initial = [variable.numpy().copy() for variable in trainer.vae.trainable_variables]
    (logs,) = trainer.fit(synthetic_images(rows), synthetic_images(10, seed=3))
    changed = [not np.array_equal(before, variable.numpy())
               for before, variable in zip(initial, trainer.vae.trainable_variables, strict=True)]
    return int(trainer.optimizer.iterations.numpy()), logs, changed


@pytest.mark.parametrize(("rows", "batch_size", "steps"), [(250, 100, 3), (5, 1, 5), (30, 100, 1)])
def test_every_batch_including_the_partial_last_one_takes_an_optimizer_step(
    backend: str, rows: int, batch_size: int, steps: int
) -> None:
    taken, logs, changed = on_backend(backend, _steps_taken, backend, rows, batch_size)
    assert taken == steps
    assert all(np.isfinite(value) for value in logs.values())
    assert all(changed)


def _still_epoch_and_evaluation(backend: str, rows: int, batch_size: int) -> tuple[int, dict, dict]:
    """One epoch at learning rate 0 with σ = e^-15, and ``evaluate`` on the same images."""
    vae = build_vae(BASE.latent_dim, BASE.intermediate_dim, seed=0)
    z_log_var = vae.get_layer("encoder").get_layer("z_log_var")
    kernel, bias = z_log_var.get_weights()
    z_log_var.set_weights([np.zeros_like(kernel), np.full_like(bias, -30.0)])
    trainer = make_trainer(config(backend, batch_size=batch_size, optimizer="sgd", learning_rate=0.0), vae=vae)
    images = synthetic_images(rows, seed=4)
    images[: rows // 2] *= 0.1  # rows of very different losses, so weighting errors show
    (logs,) = trainer.fit(images, images[:1])
    return int(trainer.optimizer.iterations.numpy()), logs, trainer.evaluate(images)


@pytest.mark.parametrize(("rows", "batch_size"), [(250, 100), (30, 100)])
def test_epoch_logs_weight_every_row_once_including_the_partial_batch(backend: str, rows: int,
                                                                      batch_size: int) -> None:
    """With no weight change and (almost) no sampling noise, the epoch average equals ``evaluate``.

    Averaging batch means with equal weights, or dropping the tail, would miss by far more than 1e-5.
    """
    steps, logs, expected = on_backend(backend, _still_epoch_and_evaluation, backend, rows, batch_size)
    assert steps == math.ceil(rows / batch_size)
    assert {name: logs[name] for name in LOSS_NAMES} == pytest.approx(expected, rel=1e-5)


def _diverge(backend: str, images: np.ndarray, **changes: object) -> tuple[Exception | None, list[dict]]:
    """Train until it fails; the error (``None`` if none) and the epochs reported as finished."""
    reported: list[dict[str, float]] = []
    try:
        make_trainer(config(backend, **changes)).fit(images, synthetic_images(10),
                                                     lambda epoch, logs: reported.append(logs))
    except TrainingDivergedError as error:
        return error, reported
    return None, reported


def test_a_huge_learning_rate_raises_training_diverged(backend: str) -> None:
    error, reported = on_backend(backend, _diverge, backend, synthetic_images(200), learning_rate=1e6, epochs=4)
    assert isinstance(error, TrainingDivergedError) and isinstance(error, PipelineError)
    message = str(error)
    assert re.fullmatch(r"loss became (nan|-?inf) in epoch \d; lower train\.learning_rate \(now 1000000\.0\) "
                        r"or check the data", message), message
    diverged_epoch = int(re.search(r"epoch (\d)", message).group(1))
    assert len(reported) == diverged_epoch - 1, "the epoch with a non-finite loss is not reported as finished"
    assert all(np.isfinite(logs["loss"]) for logs in reported)


def test_nan_in_the_data_raises_training_diverged(backend: str) -> None:
    images = synthetic_images(200)
    images[17, 3] = np.nan
    error, reported = on_backend(backend, _diverge, backend, images)
    assert isinstance(error, TrainingDivergedError) and reported == []
    assert re.match("loss became nan.*check the data", str(error)), error


def _logs_and_evaluation(backend: str) -> tuple[dict, dict]:
    trainer = make_trainer(config(backend, epochs=1))
    (logs,) = trainer.fit(synthetic_images(200), synthetic_images(50, seed=5))
    return logs, trainer.evaluate(synthetic_images(1500, seed=6))  # two evaluation batches, the last partial


def test_logs_hold_every_loss_term_for_train_and_val_and_they_add_up(backend: str) -> None:
    beta = BASE.beta
    logs, evaluated = on_backend(backend, _logs_and_evaluation, backend)
    assert set(logs) == {*LOSS_NAMES, *(f"val_{name}" for name in LOSS_NAMES), "seconds"}
    for terms in (evaluated, logs, {name: logs[f"val_{name}"] for name in LOSS_NAMES}):
        assert terms["neg_elbo"] == pytest.approx(terms["reconstruction_loss"] + terms["kl_loss"], rel=1e-6)
        assert terms["loss"] == pytest.approx(terms["reconstruction_loss"] + beta * terms["kl_loss"], rel=1e-6)
    assert evaluated["kl_loss"] > 0 and evaluated["neg_elbo"] > evaluated["loss"]
