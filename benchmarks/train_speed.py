"""Training speed: the notebook's Keras ``fit`` path against ``VaeTrainer``'s compiled epoch loop.

Both train the same layers on the same objective in one process, from the same initial weights:
(a) ``model.fit(x, x, batch_size, shuffle=True)`` with ``jit_compile=False`` and one step per
execution, as the notebook trained; (b) ``VaeTrainer.fit``, one XLA-compiled loop per epoch.
Both validate each epoch on the same held-out images, as the notebook did with ``x_test``.

    uv run python benchmarks/train_speed.py --epochs 3 [--data DIR] [--params params.yaml]

``--data`` is a prepared folder (``train.npz`` and ``val.npz`` or ``test.npz``) or a folder of
the MNIST ``*.gz`` files; by default data/prepared when it holds train.npz, else ../shared/data/mnist.
"""

import argparse
import dataclasses
import gzip
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from pipeline.core.metrics import LOSS_NAMES
from pipeline.core.params import load_params
from pipeline.core.paths import PARAMS_FILE, PREPARED_DIR
from pipeline.data.idx_format import parse_idx
from pipeline.data.splits import load_split, split_path
from pipeline.model.losses import kl_loss, reconstruction_loss
from pipeline.model.optimizers import make_optimizer
from pipeline.model.trainer import TrainConfig, make_trainer
from pipeline.model.vae import build_vae, decoder_logits
from pipeline.prepare import scale

SHARED_MNIST = Path("../shared/data/mnist")
RAW_FILES = {"train": "train-images-idx3-ubyte.gz", "test": "t10k-images-idx3-ubyte.gz"}


class EpochClock:
    """Wall-clock and process CPU seconds of each epoch, validation included.

    CPU seconds barely move when other processes share the cores; wall seconds do.
    """

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.start()

    def start(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def lap(self) -> None:
        """Close the running epoch and start the next."""
        self.wall.append(time.perf_counter() - self._wall)
        self.cpu.append(time.process_time() - self._cpu)
        self.start()


@dataclass(frozen=True)
class Timing:
    """One path's epoch clock and its last epoch's logs."""

    clock: EpochClock
    final: dict[str, float]


def steady(seconds: list[float]) -> float:
    """Mean seconds per epoch after the first, which pays for tracing and compiling."""
    return float(np.mean(seconds[1:]))


def load_images(data: Path) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) float32 images from a prepared folder or from a folder of MNIST .gz files."""
    if split_path(data, "train").is_file():
        held_out = "val" if split_path(data, "val").is_file() else "test"
        return load_split(data, "train")[0], load_split(data, held_out)[0]
    return tuple(scale(parse_idx(gzip.decompress((data / RAW_FILES[split]).read_bytes()), split))
                 for split in ("train", "test"))  # type: ignore[return-value]


class NotebookVae(keras.Model):
    """The notebook's training path: Keras ``fit`` runs ``train_step`` once per batch, no XLA."""

    def __init__(self, vae: keras.Model, beta: float) -> None:
        super().__init__(name="notebook_vae")
        self.vae = vae
        self.encoder = vae.get_layer("encoder")
        self.logits = decoder_logits(vae.get_layer("decoder"))
        self.beta = beta
        self.trackers = [keras.metrics.Mean(name=name) for name in LOSS_NAMES]

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return self.trackers

    def call(self, images: tf.Tensor) -> tf.Tensor:
        return self.vae(images)

    def _loss_terms(self, images: tf.Tensor) -> tuple[tf.Tensor, ...]:
        z_mean, z_log_var, z = self.encoder(images, training=True)
        reconstruction = tf.reduce_mean(reconstruction_loss(images, self.logits(z)))
        kl = tf.reduce_mean(kl_loss(z_mean, z_log_var))
        return reconstruction + self.beta * kl, reconstruction, kl, reconstruction + kl

    def _record(self, losses: tuple[tf.Tensor, ...], images: tf.Tensor) -> dict[str, tf.Tensor]:
        for tracker, value in zip(self.trackers, losses, strict=True):
            tracker.update_state(value, sample_weight=tf.shape(images)[0])
        return {tracker.name: tracker.result() for tracker in self.trackers}

    def train_step(self, data: tuple[tf.Tensor, tf.Tensor]) -> dict[str, tf.Tensor]:
        images, _ = data
        with tf.GradientTape() as tape:
            losses = self._loss_terms(images)
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(losses[0], variables), variables)
        return self._record(losses, images)

    def test_step(self, data: tuple[tf.Tensor, tf.Tensor]) -> dict[str, tf.Tensor]:
        return self._record(self._loss_terms(data[0]), data[0])


class KerasEpochClock(keras.callbacks.Callback):
    """An ``EpochClock`` driven by Keras' epoch callbacks."""

    def __init__(self, clock: EpochClock) -> None:
        super().__init__()
        self.clock = clock

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.clock.start()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.clock.lap()


def time_keras_fit(config: TrainConfig, train: np.ndarray, held_out: np.ndarray) -> Timing:
    """(a): the notebook's ``fit``, graph mode without XLA, one step per execution."""
    keras.utils.set_random_seed(config.seed)
    model = NotebookVae(build_vae(config.latent_dim, config.intermediate_dim, seed=config.seed), config.beta)
    model.compile(optimizer=make_optimizer(config, config.steps_per_epoch),
                  jit_compile=False, steps_per_execution=1)
    clock = EpochClock()
    history = model.fit(train, train, batch_size=config.batch_size, epochs=config.epochs, shuffle=True,
                        validation_data=(held_out, held_out), callbacks=[KerasEpochClock(clock)], verbose=0)
    return Timing(clock, {name: values[-1] for name, values in history.history.items()})


def time_vae_trainer(config: TrainConfig, train: np.ndarray, held_out: np.ndarray) -> Timing:
    """(b): the pipeline's TensorFlow loop, one XLA-compiled ``tf.while_loop`` per epoch."""
    trainer, clock = make_trainer(config), EpochClock()
    history = trainer.fit(train, held_out, lambda epoch, logs: clock.lap())
    return Timing(clock, history[-1])


def report(config: TrainConfig, rows: int, timings: dict[str, Timing]) -> str:
    """The comparison table, then the speed-up of (b) over (a) in steady state."""
    lines = [f"{'path':<26}{'1st epoch s':>12}{'steady s/ep':>12}{'samples/s':>10}{'cpu s/ep':>9}"
             f"{'samples/cpu-s':>14}{'final loss':>11}{'val_loss':>9}{'val_neg_elbo':>13}"]
    for name, timing in timings.items():
        wall, cpu = steady(timing.clock.wall), steady(timing.clock.cpu)
        lines.append(f"{name:<26}{timing.clock.wall[0]:>12.2f}{wall:>12.2f}{rows / wall:>10.0f}{cpu:>9.2f}"
                     f"{rows / cpu:>14.0f}{timing.final['loss']:>11.2f}{timing.final['val_loss']:>9.2f}"
                     f"{timing.final['val_neg_elbo']:>13.2f}")
    notebook, compiled = (timing.clock for timing in timings.values())
    lines.append(
        f"speed-up (b)/(a) over epochs 2-{config.epochs}: {steady(notebook.wall) / steady(compiled.wall):.2f}x "
        f"samples/s, {steady(notebook.cpu) / steady(compiled.cpu):.2f}x samples per CPU second; "
        f"first epoch: {notebook.wall[0] / compiled.wall[0]:.2f}x"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, train both ways, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per path, at least 2 (default 3)")
    parser.add_argument("--data", type=Path, default=None, help="prepared folder or folder of MNIST .gz files")
    parser.add_argument("--params", type=Path, default=PARAMS_FILE, help="model and train settings")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is excluded from the steady state")
    data = args.data or (PREPARED_DIR if split_path(PREPARED_DIR, "train").is_file() else SHARED_MNIST)
    params = load_params(args.params)
    train, held_out = load_images(data)
    config = TrainConfig.from_params(params, train_size=len(train))
    config = dataclasses.replace(config, epochs=args.epochs)
    print(f"data: {len(train)} train / {len(held_out)} held-out images from {data}; latent {config.latent_dim}, "
          f"hidden {config.intermediate_dim}, {config.optimizer} lr {config.learning_rate}, beta {config.beta}, "
          f"batch {config.batch_size}, {config.epochs} epochs; TensorFlow {tf.__version__}, Keras {keras.__version__}")
    timings = {
        "(a) keras fit, no XLA": time_keras_fit(config, train, held_out),
        "(b) VaeTrainer, XLA loop": time_vae_trainer(config, train, held_out),
    }
    print(report(config, len(train), timings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
