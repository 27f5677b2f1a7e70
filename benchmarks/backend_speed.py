"""Backend speed: the train stage on TensorFlow and on JAX against the notebook's ``fit``, in one run.

Each round runs, one after the other so they share the machine's load alike, three whole processes on
the prepared data with the default params (only ``train.backend`` differs), each writing into a
temporary folder with a fresh copy of one empty SQLite MLflow store:

1. ``python -m pipeline.train`` with ``train.backend: tensorflow``;
2. the same with ``train.backend: jax``;
3. ``benchmarks/notebook_fit.py``: the notebook's Keras model and ``fit`` (TensorFlow), the baseline.

Per process: wall and CPU seconds (user + system, ``RUSAGE_CHILDREN``), the first epoch (trace and
compile included) and the median of the later epochs, read from the run's per-epoch ``seconds`` metric
(the notebook prints its own). Then the start-up a tuning trial pays per process, ``import
pipeline.model`` on each backend. All figures are medians over ``--rounds``; ratios are JAX over
TensorFlow and each over the notebook's ``fit``. Needs the jax extra (``uv sync --extra jax``).

    uv run python benchmarks/backend_speed.py [--rounds 3] [--prepared data/prepared] [--epochs N]
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from tabulate import tabulate

REPO_ROOT = Path(__file__).resolve().parent.parent
COMMAND_TIMEOUT_S = 900
PATHS = ("tensorflow", "jax", "notebook")


@dataclass
class Samples:
    """Per-round measurements of one path."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    first_epoch: list[float] = field(default_factory=list)
    later_epochs: list[float] = field(default_factory=list)
    final_loss: list[float] = field(default_factory=list)


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """Run ``command``; its wall and CPU seconds and its stdout. Fails loudly on a non-zero exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    answer = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if answer.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{answer.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, answer.stdout


def epoch_seconds(store: Path) -> tuple[list[float], float]:
    """The per-epoch ``seconds`` and the last ``loss`` of the one run in ``store``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    (run,) = client.search_runs([experiment.experiment_id for experiment in client.search_experiments()])
    history = sorted(client.get_metric_history(run.info.run_id, "seconds"), key=lambda metric: metric.step)
    return [metric.value for metric in history], run.data.metrics["loss"]


def stage_round(backend: str, params: dict, prepared: Path, empty_store: Path, env: dict[str, str],
                samples: Samples) -> None:
    """One train-stage process on ``backend`` in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix=f"backend-speed-{backend}-") as folder:
        root = Path(folder)
        (root / "params.yaml").write_text(yaml.safe_dump({**params, "train": {**params["train"],
                                                                             "backend": backend}}))
        shutil.copyfile(empty_store, root / "mlflow.db")
        command = [sys.executable, "-m", "pipeline.train", "--params", "params.yaml", "--prepared", str(prepared)]
        wall, cpu, _ = timed(command, root, {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db"})
        epochs, loss = epoch_seconds(root / "mlflow.db")
    record(samples, wall, cpu, epochs, loss)


def notebook_round(params_file: Path, prepared: Path, env: dict[str, str], samples: Samples) -> None:
    """One ``notebook_fit.py`` process; it prints ``loss L, ..., first epoch F s, then S s/epoch``."""
    command = [sys.executable, str(REPO_ROOT / "benchmarks" / "notebook_fit.py"), "--data", str(prepared),
               "--params", str(params_file)]
    wall, cpu, output = timed(command, REPO_ROOT, env)
    words = output.replace(",", " ").split()
    first = float(words[words.index("first") + 2])
    later = float(words[words.index("then") + 1]) if "then" in words else first
    record(samples, wall, cpu, [first, later], float(words[words.index("loss") + 1]))


def record(samples: Samples, wall: float, cpu: float, epochs: list[float], loss: float) -> None:
    samples.wall.append(wall)
    samples.cpu.append(cpu)
    samples.first_epoch.append(epochs[0])
    samples.later_epochs.append(statistics.median(epochs[1:]) if len(epochs) > 1 else epochs[0])
    samples.final_loss.append(loss)


def import_cost(backend: str, env: dict[str, str], rounds: int) -> tuple[float, float]:
    """Median wall and CPU seconds of a process that only imports ``pipeline.model`` on ``backend``."""
    runs = [timed([sys.executable, "-c", "import pipeline.model"], REPO_ROOT, {**env, "KERAS_BACKEND": backend})
            for _ in range(rounds)]
    return statistics.median(run[0] for run in runs), statistics.median(run[1] for run in runs)


def table(results: dict[str, Samples], imports: dict[str, tuple[float, float]]) -> str:
    """The medians per path and the ratios the issue sets goals for."""
    median = {name: {key: statistics.median(getattr(samples, key)) for key in
                     ("wall", "cpu", "first_epoch", "later_epochs", "final_loss")}
              for name, samples in results.items()}
    rows = [[name, f"{m['wall']:.1f}", f"{m['cpu']:.1f}", f"{m['first_epoch']:.2f}", f"{m['later_epochs']:.2f}",
             f"{m['final_loss']:.2f}", *([f"{value:.1f}" for value in imports[name]] if name in imports else ["-"] * 2)]
            for name, m in median.items()]
    lines = [tabulate(rows, headers=["path", "process wall s", "process CPU s", "1st epoch s", "later epochs s",
                                     "final loss", "import wall s", "import CPU s"], tablefmt="github")]
    jax, tf, notebook = (median[name] for name in ("jax", "tensorflow", "notebook"))
    for key, label in (("wall", "whole process (wall)"), ("cpu", "whole process (CPU)"),
                       ("later_epochs", "per epoch after the first"), ("first_epoch", "first epoch")):
        lines.append(f"{label}: JAX/TF {jax[key] / tf[key]:.2f}x, JAX/notebook {jax[key] / notebook[key]:.2f}x, "
                     f"TF/notebook {tf[key] / notebook[key]:.2f}x")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, run the rounds, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three processes (default 3)")
    parser.add_argument("--prepared", type=Path, default=REPO_ROOT / "data" / "prepared",
                        help="prepared folder (dvc repro prepare)")
    parser.add_argument("--params", type=Path, default=REPO_ROOT / "params.yaml", help="the params to train with")
    parser.add_argument("--epochs", type=int, default=None, help="default: train.epochs from the params")
    args = parser.parse_args(argv)
    params = yaml.safe_load(args.params.read_text())
    if args.epochs:
        params["train"]["epochs"] = args.epochs
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("KERAS_", "MLFLOW_", "DVC_"))} | {"PYTHONPATH": str(REPO_ROOT)}
    results = {name: Samples() for name in PATHS}
    with tempfile.TemporaryDirectory(prefix="backend-speed-") as folder:
        empty_store, params_file = Path(folder) / "empty.db", Path(folder) / "params.yaml"
        params_file.write_text(yaml.safe_dump(params))
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=f"sqlite:///{empty_store}").search_experiments()  # migrate once, copy per run
        for round_number in range(args.rounds):
            for backend in ("tensorflow", "jax"):
                stage_round(backend, params, args.prepared.resolve(), empty_store, env, results[backend])
            notebook_round(params_file, args.prepared.resolve(), env, results["notebook"])
            print(f"round {round_number + 1}/{args.rounds} done; load average {os.getloadavg()[0]:.2f}",
                  file=sys.stderr)
    imports = {backend: import_cost(backend, env, args.rounds) for backend in ("tensorflow", "jax")}
    print(f"{args.rounds} rounds, {params['train']['epochs']} epochs, load average now "
          f"{' '.join(f'{value:.2f}' for value in os.getloadavg())}")
    print(table({name: results[name] for name in ("jax", "tensorflow", "notebook")}, imports))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
