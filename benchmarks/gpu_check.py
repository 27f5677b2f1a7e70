"""The GPU check: the default model trained by the JAX loop on whatever device JAX finds, timed.

Two steps. Here, where the project is installed: ``prepare`` copies the four MNIST ``.gz`` files and the
Python packages a JAX host may lack (Keras and the pure-Python packages the project's model code imports,
from this environment) into ``.gpu-check/`` (git-ignored), about 20 MB. On the accelerator host, which has
JAX (with CUDA) but neither TensorFlow nor this project's environment: ``run``, from the repository root,
with ``.gpu-check`` carried along. ``run`` puts the carried packages after the host's own on ``sys.path``
(the host's win), verifies the MNIST files by their pinned SHA-256, then prints:

- the device; the first epoch (trace and XLA compile included), the median later epoch and their difference
  (the compile time), for the default params (batch 100, ``train.epochs`` epochs);
- the test −ELBO (``evaluate.elbo_samples`` draws) and −log p(x) (``evaluate.is_samples``) after training;
- for each ``--batch-sizes`` (default 100, 1000, 10000): the first epoch and the samples per second of a
  later one.

It runs on CPU JAX too (``--train-rows`` and ``--is-samples`` make it small):

    uv run python benchmarks/gpu_check.py prepare
    python benchmarks/gpu_check.py run                         # on the GPU host
    uv run --extra jax python benchmarks/gpu_check.py run --train-rows 3000 --epochs 2 --is-samples 20 \\
        --batch-sizes 100 1000                                 # a small run on this machine's CPU
"""

import argparse
import gzip
import hashlib
import importlib.util
import os
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECK_DIR = REPO_ROOT / ".gpu-check"
SHARED_MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist"
CARRIED = ("keras", "namex", "absl", "rich", "markdown_it", "mdurl", "pygments", "optree", "h5py", "pydantic",
           "pydantic_core", "annotated_types", "typing_inspection", "typing_extensions", "yaml", "packaging")
"""What the model code imports beyond JAX and NumPy; a host's own copy wins over the carried one."""


def prepare(mnist: Path) -> None:
    """Copy the MNIST files and the packages in ``CARRIED`` into ``.gpu-check``."""
    (CHECK_DIR / "mnist").mkdir(parents=True, exist_ok=True)
    for path in sorted(mnist.glob("*-ubyte.gz")):
        shutil.copyfile(path, CHECK_DIR / "mnist" / path.name)
    site = CHECK_DIR / "site"
    shutil.rmtree(site, ignore_errors=True)
    for name in CARRIED:
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin)
        if origin.name == "__init__.py":
            shutil.copytree(origin.parent, site / name, ignore=shutil.ignore_patterns("__pycache__", "tests"))
        else:
            site.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(origin, site / origin.name)
    size = sum(path.stat().st_size for path in CHECK_DIR.rglob("*") if path.is_file())
    print(f"prepared {CHECK_DIR}: {size / 2**20:.0f} MiB (MNIST and {len(CARRIED)} packages)")


def mnist_split(folder: Path, split: str) -> np.ndarray:
    """The ``train`` or ``test`` images as float32 (n, 784) in [0, 1], content verified by SHA-256."""
    from pipeline.data.datasets import DATASETS
    from pipeline.data.idx_format import parse_idx
    from pipeline.prepare import scale

    idx = DATASETS["mnist"].files[f"{split}_images"]
    data = gzip.decompress((folder / idx.gz_name).read_bytes())
    if hashlib.sha256(data).hexdigest() != idx.sha256:
        raise SystemExit(f"{folder / idx.gz_name}: content does not match the pinned SHA-256")
    return scale(parse_idx(data, idx.gz_name))


def timed_epochs(trainer: object, train: np.ndarray, held_out: np.ndarray) -> list[float]:
    """Seconds of each epoch (its validation included), as the trainer measures them."""
    return [logs["seconds"] for logs in trainer.fit(train, held_out)]


def run(args: argparse.Namespace) -> None:
    """Train and time on JAX's default device; print the figures."""
    sys.path.insert(0, str(REPO_ROOT))  # the project, carried as a folder, not installed
    sys.path.append(str(CHECK_DIR / "site"))
    os.environ["KERAS_BACKEND"] = "jax"
    import dataclasses

    import jax

    from pipeline.core.params import Params
    from pipeline.model.likelihood import LikelihoodEstimator
    from pipeline.model.trainer import TrainConfig, make_trainer

    params = Params()
    config = dataclasses.replace(TrainConfig.from_params(params), backend="jax",
                                 epochs=args.epochs or params.train.epochs)
    train, test = mnist_split(args.mnist, "train")[: args.train_rows], mnist_split(args.mnist, "test")
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}); JAX {jax.__version__}; "
          f"{len(train)} train images, {config.epochs} epochs")
    trainer = make_trainer(config)
    epochs = timed_epochs(trainer, train, test)
    later = statistics.median(epochs[1:]) if len(epochs) > 1 else float("nan")
    print(f"batch {config.batch_size}: first epoch {epochs[0]:.2f} s, later epochs {later:.2f} s "
          f"({len(train) / later:.0f} samples/s), compile about {epochs[0] - later:.2f} s")
    started = time.perf_counter()
    scores = LikelihoodEstimator(trainer.parts).score(test, params.evaluate.elbo_samples, args.is_samples,
                                                      params.evaluate.batch_size, params.evaluate.seed)
    print(f"after {config.epochs} epochs: test -ELBO {np.mean(scores.neg_elbo):.2f}, -log p(x) "
          f"{np.mean(scores.nll_is):.2f} nats ({args.is_samples} importance samples, "
          f"{time.perf_counter() - started:.1f} s)")
    for batch_size in args.batch_sizes:
        sized = make_trainer(dataclasses.replace(config, batch_size=batch_size, epochs=2))
        first, second = timed_epochs(sized, train, test)
        print(f"batch {batch_size}: first epoch {first:.2f} s, later epoch {second:.2f} s, "
              f"{len(train) / second:.0f} samples/s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    prepare_step = steps.add_parser("prepare", help="copy MNIST and the packages into .gpu-check")
    prepare_step.add_argument("--mnist", type=Path, default=SHARED_MNIST, help="folder of the four MNIST .gz")
    run_step = steps.add_parser("run", help="train and time on JAX's default device")
    run_step.add_argument("--mnist", type=Path, default=CHECK_DIR / "mnist")
    run_step.add_argument("--train-rows", type=int, default=60_000)
    run_step.add_argument("--epochs", type=int, default=None, help="default: train.epochs (5)")
    run_step.add_argument("--is-samples", type=int, default=200, help="importance samples per test image")
    run_step.add_argument("--batch-sizes", type=int, nargs="*", default=[100, 1000, 10_000])
    args = parser.parse_args(argv)
    if args.step == "prepare":
        prepare(args.mnist)
    else:
        run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
