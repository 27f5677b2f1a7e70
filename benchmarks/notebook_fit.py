"""The baseline process: the "GANs in Action" ch. 2 notebook's Keras VAE trained with ``fit``.

784 -> Dense 256 relu -> ``z_mean``, ``z_log_var``; sampling; 2 -> Dense 256 relu -> 784 sigmoid;
loss 784 * mean binary cross-entropy + 0.05 * sum(exp(z_log_var) + z_mean^2 - 1 - z_log_var)
(``train.beta`` 0.1); RMSprop, batch 100, 5 epochs, validated on the held-out split each epoch.
The model and its ``fit`` call are ``train_speed.NotebookVae`` and ``train_speed.time_keras_fit``;
this script runs them as a whole process, so ``pipeline_speed.py`` can time it against the train stage.

    uv run python benchmarks/notebook_fit.py [--data data/prepared] [--params params.yaml] [--epochs N]
"""

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path

from train_speed import load_images, steady, time_keras_fit

from pipeline.core.params import load_params
from pipeline.core.paths import PARAMS_FILE, PREPARED_DIR
from pipeline.model.trainer import TrainConfig


def main(argv: Sequence[str] | None = None) -> int:
    """Train the notebook's model on the prepared data; print one line with its losses and epoch times."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=PREPARED_DIR, help="prepared folder or folder of MNIST .gz")
    parser.add_argument("--params", type=Path, default=PARAMS_FILE, help="model and train settings")
    parser.add_argument("--epochs", type=int, default=None, help="default: train.epochs from the params")
    args = parser.parse_args(argv)
    train, held_out = load_images(args.data)
    config = TrainConfig.from_params(load_params(args.params), train_size=len(train))
    if args.epochs is not None:
        config = dataclasses.replace(config, epochs=args.epochs)
    timing = time_keras_fit(config, train, held_out)
    epochs = timing.clock.wall
    after_first = f", then {steady(epochs):.1f} s/epoch" if len(epochs) > 1 else ""
    print(f"notebook fit: {config.epochs} epochs, loss {timing.final['loss']:.1f}, "
          f"val_neg_elbo {timing.final['val_neg_elbo']:.1f}, first epoch {epochs[0]:.1f} s{after_first}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
