"""How many DVC queue workers fit this machine: the same sweep run with ``dvc queue start -j 1, 2, 3 ...``.

In a throw-away clone (the committed HEAD) with the default store (its own ``mlflow.db``), download and
prepare are built once; then, for each worker count, ``--experiments`` experiments differing only in
``train.seed`` (new seeds each round, so DVC's run cache cannot skip any) are queued and run until none is
queued or running. Prints the wall time of each round, the ratio of each throughput to ``-j 1``'s measured
in the same run (medians over ``--repeats``), how long one training took (start to end of its MLflow
run: what parallel workers slow down), and how many experiments failed.

    MNIST_MIRROR=/abs/path/to/mnist uv run python benchmarks/queue_workers.py --experiments 4 --workers 1 2 3
"""

import argparse
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
POLL_S = 5.0
IDENTITY = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
            "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}


def dvc(root: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=env, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"dvc {' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done.stdout


def states(root: Path, env: dict[str, str]) -> dict[str, str]:
    """{experiment name: queued | running | success | failed} from ``dvc exp show --json``."""
    rows = json.loads(dvc(root, env, "exp", "show", "--json", "--no-fetch"))
    return {exp["name"]: (exp.get("executor") or {}).get("state") or "done"
            for row in rows for exp in row.get("experiments") or []}


def training_seconds(root: Path, names: Sequence[str]) -> list[float]:
    """Start-to-end seconds of the MLflow training runs named ``names`` in the clone's store."""
    with sqlite3.connect(root / "mlflow.db") as store:
        rows = store.execute(
            f"SELECT end_time - start_time FROM runs WHERE name IN ({','.join('?' * len(names))}) "
            "AND end_time IS NOT NULL", list(names)).fetchall()
    return [milliseconds / 1000 for (milliseconds,) in rows]


def sweep(root: Path, env: dict[str, str], workers: int, count: int, first_seed: int,
          settings: Sequence[str]) -> tuple[float, int, list[str]]:
    """Queue ``count`` seeds, run them with ``workers`` workers; return (wall seconds, failures, names)."""
    names = [f"w{workers}-s{first_seed + index}" for index in range(count)]
    for index, name in enumerate(names):
        options = [part for setting in settings for part in ("-S", setting)]
        dvc(root, env, "exp", "run", "--queue", "-n", name, "-S", f"train.seed={first_seed + index}", *options)
    started = time.monotonic()
    dvc(root, env, "queue", "start", "-j", str(workers))
    while True:
        time.sleep(POLL_S)
        now = states(root, env)
        if all(now.get(name) in ("success", "failed", "done") for name in names):
            wall = time.monotonic() - started
            return wall, sum(now[name] == "failed" for name in names), names


def solo(root: Path, env: dict[str, str], seed: int, settings: Sequence[str]) -> tuple[float, float, float]:
    """One ``dvc exp run`` in the foreground: (wall s, CPU s of all its processes, largest process's peak GiB).

    CPU / wall is how many of the cores one experiment keeps busy: what is left over is all that
    more workers can use.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    options = [part for setting in settings for part in ("-S", setting)]
    dvc(root, env, "exp", "run", "-n", f"solo-s{seed}", "-S", f"train.seed={seed}", *options)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss / 2**20


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=4, help="experiments per round (default 4)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3],
                        help="worker counts; the first is the baseline")
    parser.add_argument("--repeats", type=int, default=1, help="rounds per worker count (median reported)")
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        help="extra -S for every experiment, e.g. train.epochs=2")
    args = parser.parse_args(argv)
    mirror = os.environ.get("MNIST_MIRROR", "")
    if not Path(mirror).is_absolute():
        raise SystemExit("set MNIST_MIRROR to an absolute folder of the MNIST .gz files (queued runs start elsewhere)")

    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "DVC_"))}
    env |= IDENTITY | {"PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])}
    with tempfile.TemporaryDirectory(prefix="queue-workers-") as scratch:
        root = Path(scratch) / "clone"
        subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(root)], check=True)
        dvc(root, env, "repro", "prepare")
        wall, cpu, peak = solo(root, env, 999, args.settings)
        print(f"one experiment alone: {wall:.0f} s wall, {cpu:.0f} s CPU ({cpu / wall:.2f} of "
              f"{os.cpu_count()} cores busy), largest process {peak:.2f} GiB", flush=True)
        walls: dict[int, list[float]] = {workers: [] for workers in args.workers}
        trainings: dict[int, list[float]] = {workers: [] for workers in args.workers}
        failures = dict.fromkeys(args.workers, 0)
        for repeat in range(args.repeats):
            for workers in args.workers:
                wall, failed, names = sweep(root, env, workers, args.experiments,
                                            1000 * (repeat + 1) + 100 * workers, args.settings)
                walls[workers].append(wall)
                trainings[workers] += training_seconds(root, names)
                failures[workers] += failed
                print(f"round {repeat + 1}: -j {workers}: {wall:.0f} s for {args.experiments} experiments, "
                      f"{failed} failed", flush=True)
        dvc(root, env, "queue", "stop")
    baseline = statistics.median(walls[args.workers[0]])
    print(f"\n{args.experiments} experiments per round, median of {args.repeats}; "
          f"throughput relative to -j {args.workers[0]}")
    print("workers  wall s  s/experiment  throughput  train s (median)  failed")
    for workers in args.workers:
        wall = statistics.median(walls[workers])
        train = statistics.median(trainings[workers]) if trainings[workers] else float("nan")
        print(f"{workers:>7}  {wall:>6.0f}  {wall / args.experiments:>12.1f}  {baseline / wall:>9.2f}x  "
              f"{train:>15.1f}  {failures[workers]:>6}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
