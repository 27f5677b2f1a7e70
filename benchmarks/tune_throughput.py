"""Completed trials per hour: tracked studies (``tune run`` with 1 and 2 workers) against the user's alternative,
a hand-written Optuna loop around the notebook's Keras ``fit`` in one process, on the same space and epochs.

In a throw-away clone of HEAD (or ``--rev``) with its own MLflow store, download and prepare are built once;
then each round runs ``--trials`` trials of ``--epochs`` epochs (a new ``train.seed`` each round, so DVC's run
cache skips nothing) with each worker count, then the script (``--script`` mode of the clone's copy of this
file, as its own process: it pays TensorFlow's import once, as a user's script does) on the same validation
split. Prints, with medians over ``--repeats``: wall seconds, trials per hour and their ratio to the script's,
and per trial the seconds of its training epochs and the rest (process starts, DVC, MLflow, model building),
from the trials' own records, and of that rest what lies outside the trial's MLflow run (DVC, the stage's
process start and its imports, TensorFlow's included, loading the data, pushing the experiment).

    MNIST_MIRROR=/abs/path/to/mnist uv run python benchmarks/tune_throughput.py --trials 6 --epochs 2
"""

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
IDENTITY = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
            "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}


def run(root: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {done.returncode}: {(done.stdout + done.stderr)[-3000:]}")
    return done.stdout


def tracked(root: Path, env: dict[str, str], workers: int, trials: int, epochs: int, seed: int) -> dict[str, float]:
    """One ``tune run``: wall seconds, and per trial (medians) its seconds and its training epochs' seconds."""
    from pipeline.tuning import study as studies

    name = f"bench-w{workers}-s{seed}"
    started = time.monotonic()
    run(root, env, "-m", "pipeline", "tune", "run", "--study", name, "--trials", str(trials), "--workers",
        str(workers), "--set", f"train.epochs={epochs}", "--set", f"train.seed={seed}")
    wall = time.monotonic() - started
    done = [trial for trial in studies.load(str(root / ".tune" / "journal.log"), name).get_trials()
            if trial.state.name == "COMPLETE"]
    with sqlite3.connect(root / "mlflow.db") as store:
        epoch_seconds = [store.execute("SELECT sum(value) FROM metrics WHERE run_uuid = ? AND key = 'seconds'",
                                       (trial.user_attrs["mlflow_run_id"],)).fetchone()[0] for trial in done]
        run_seconds = [(end - start) / 1000 for start, end in (
            store.execute("SELECT start_time, end_time FROM runs WHERE run_uuid = ?",
                          (trial.user_attrs["mlflow_run_id"],)).fetchone() for trial in done)]
    seconds = [(trial.datetime_complete - trial.datetime_start).total_seconds() for trial in done]
    return {"wall": wall, "complete": len(done), "trial": statistics.median(seconds),
            "epochs": statistics.median(epoch_seconds),
            "outside": statistics.median(total - inside for total, inside in zip(seconds, run_seconds, strict=True))}


def script(root: Path, env: dict[str, str], data: Path, trials: int, epochs: int, seed: int) -> dict[str, float]:
    """The user's script as a process of its own, the clone's copy on the clone's code, space and params (so a
    round measures one commit whatever the working tree holds); it prints its per-trial seconds."""
    started = time.monotonic()
    output = run(root, env | {"PYTHONPATH": str(root)}, str(root / "benchmarks" / Path(__file__).name), "--script",
                 "--data", str(data), "--trials", str(trials), "--epochs", str(epochs), "--seed", str(seed))
    wall = time.monotonic() - started
    rows = [line.split() for line in output.splitlines() if line.startswith("trial ")]
    return {"wall": wall, "complete": len(rows), "trial": statistics.median(float(row[2]) for row in rows),
            "epochs": statistics.median(float(row[3]) for row in rows)}


def script_loop(data: Path, trials: int, epochs: int, seed: int) -> None:
    """What a user writes: Optuna's ``optimize`` around the notebook's ``fit``, same space, nothing recorded."""
    sys.path.insert(0, str(Path(__file__).parent))
    import optuna
    from train_speed import load_images, time_keras_fit

    from pipeline.core.params import load_params
    from pipeline.model.trainer import TrainConfig
    from pipeline.tuning.space import load_settings, trial_params
    from pipeline.tuning.study import suggest

    params = load_params(REPO_ROOT / "params.yaml")
    settings = load_settings(REPO_ROOT / "tune.yaml", params, {"train.epochs": epochs, "train.seed": seed})
    train, held_out = load_images(data)

    def objective(trial: optuna.Trial) -> float:
        started = time.monotonic()
        config = TrainConfig.from_params(trial_params(params, settings, suggest(trial, settings)),
                                         train_size=len(train))
        timing = time_keras_fit(config, train, held_out)
        print(f"trial {trial.number} {time.monotonic() - started:.2f} {sum(timing.clock.wall):.2f}", flush=True)
        return timing.final["val_neg_elbo"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0)).optimize(objective, n_trials=trials)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6, help="trials per study (default 6)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per trial (default 2)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="tracked worker counts")
    parser.add_argument("--repeats", type=int, default=1, help="rounds (medians reported)")
    parser.add_argument("--rev", default="HEAD", help="the commit to measure (default: HEAD)")
    parser.add_argument("--script", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.script:
        script_loop(args.data, args.trials, args.epochs, args.seed)
        return 0
    mirror = os.environ.get("MNIST_MIRROR", "")
    if not Path(mirror).is_absolute():
        raise SystemExit("set MNIST_MIRROR to an absolute folder of the MNIST .gz files")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "DVC_", "OPTUNA_"))}
    env |= IDENTITY | {"PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])}
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="tune-throughput-") as scratch:
        root = Path(scratch) / "clone"
        subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(root)], check=True)
        subprocess.run(["git", "checkout", "--quiet", "--detach", args.rev], cwd=root, check=True)
        run(root, env, "-m", "dvc", "repro", "prepare")
        for repeat in range(args.repeats):
            seed = 1000 * (repeat + 1)
            for workers in args.workers:
                results.setdefault(f"tracked, {workers} worker{'s' * (workers > 1)}", []).append(
                    tracked(root, env, workers, args.trials, args.epochs, seed + workers))
            data = root / ".tune" / "workspaces" / "w0" / "data" / "prepared"  # the trials' validation split
            results.setdefault("script: Optuna loop around Keras fit", []).append(
                script(root, env, data, args.trials, args.epochs, seed))
            print(f"round {repeat + 1} done: " + ", ".join(f"{name} {rows[-1]['wall']:.0f} s"
                                                          for name, rows in results.items()), flush=True)
    baseline = statistics.median(row["wall"] / row["complete"] for row in results[next(reversed(results))])
    print(f"\n{args.trials} trials of {args.epochs} epochs, median of {args.repeats}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print("| variant | wall s | trials/hour | vs script | s/trial | epochs s/trial | rest s/trial | "
          "outside the run s/trial |")
    print("| --- | --: | --: | --: | --: | --: | --: | --: |")
    for name, rows in results.items():
        per_trial = statistics.median(row["wall"] / row["complete"] for row in rows)
        trial, epochs = (statistics.median(row[key] for row in rows) for key in ("trial", "epochs"))
        outside = f"{statistics.median(row['outside'] for row in rows):.1f}" if "outside" in rows[0] else ""
        print(f"| {name} | {statistics.median(row['wall'] for row in rows):.0f} | {3600 / per_trial:.0f} | "
              f"{baseline / per_trial:.2f}x | {trial:.1f} | {epochs:.1f} | {trial - epochs:.1f} | {outside} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
