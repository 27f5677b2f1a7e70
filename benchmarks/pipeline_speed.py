"""Pipeline speed: the whole ``dvc repro -f``, each stage, the quick commands and the notebook baseline, in one run.

Everything runs in a temporary clone of HEAD (removed at the end, so the working repo is left as it
was), with this environment's ``bin`` first on PATH and the clone first on PYTHONPATH, and a fresh
SQLite MLflow store in the clone (``MLFLOW_TRACKING_URI`` is dropped). In order:

1. ``dvc repro -f``: the whole pipeline; its first run also creates the MLflow store;
2. ``dvc repro -f -s <stage>`` for each stage (``--stages``);
3. ``benchmarks/notebook_fit.py``: the notebook's Keras model and ``fit`` as a whole process, the baseline;
4. ``python -m pipeline compare``, ``python -m pipeline --help`` and a ``dvc repro`` with nothing to do.

Wall seconds are medians over ``--repeats`` runs (default 1 for the pipeline-sized commands, 3 for
the quick ones); CPU seconds (user + system of the whole process tree) move less than wall seconds
when other processes share the cores. Ratios: each stage against the whole pipeline, and the train
stage against the notebook's ``fit`` process. Commands run directly, not through ``uv run``.

    uv run python benchmarks/pipeline_speed.py [--repeats N] [--stages train,evaluate] [--markdown FILE]
        [--mirror DIR] [--save-output DIR]
"""

import argparse
import datetime
import os
import platform
import re
import resource
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
HEAVY_REPEATS, QUICK_REPEATS = 1, 3
COMMAND_TIMEOUT_S = 1800
STORE_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "DVC_ROOT", "DVC_EXP_NAME")
"""Dropped from the commands' environment: they would point the runs at another store or project."""
TARGETS = {
    "whole": "≤ 60 s",
    "train": "≤ 0.6 × notebook fit",
    "compare": "≤ 5 s",
    "help": "≤ 1 s",
    "noop": "≤ 3 s",
}
"""Issue 11's targets on a 2-core machine, shown beside the measurements."""


class BenchmarkError(Exception):
    """A timed command failed or the clone could not be made."""


@dataclass
class Timed:
    """One command's measurements over its repeats."""

    key: str
    label: str
    argv: list[str]
    repeats: int
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    output: str = ""

    @property
    def median_wall(self) -> float:
        return statistics.median(self.wall)

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu)

    @property
    def lines(self) -> int:
        """Lines the last run printed (stdout and stderr together)."""
        return len(self.output.splitlines())


def children_cpu() -> float:
    """User + system CPU seconds of every finished child process (and theirs) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(timed: Timed, cwd: Path, env: dict[str, str]) -> None:
    """Run the command once, adding its wall and CPU seconds; raise with its output's tail if it fails."""
    cpu, start = children_cpu(), time.perf_counter()
    try:
        done = subprocess.run(timed.argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise BenchmarkError(f"{timed.label}: still running after {COMMAND_TIMEOUT_S} s") from None
    timed.wall.append(time.perf_counter() - start)
    timed.cpu.append(children_cpu() - cpu)
    timed.output = done.stdout
    if done.returncode != 0:
        tail = "\n".join(done.stdout.splitlines()[-15:])
        raise BenchmarkError(f"{timed.label}: exit status {done.returncode}\n{tail}")


def git(*args: str, cwd: Path = REPO_ROOT) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchmarkError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def clone_head(destination: Path) -> str:
    """Clone this repository's HEAD into ``destination``; return the commit."""
    commit = git("rev-parse", "HEAD")
    git("clone", "--quiet", str(REPO_ROOT), str(destination))
    git("checkout", "--quiet", "--detach", commit, cwd=destination)
    return commit


def command_env(clone: Path, mirror: Path | None) -> dict[str, str]:
    """This environment as ``uv run`` gives it, pointed at the clone and its own MLflow store."""
    env = {key: value for key, value in os.environ.items() if key not in STORE_ENV}
    bin_dir = Path(sys.executable).parent
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(bin_dir.parent)
    env["PYTHONPATH"] = str(clone)
    if mirror is not None:
        env["MNIST_MIRROR"] = str(mirror)
    return env


def plan(stages: Sequence[str], heavy: int, quick: int) -> list[Timed]:
    """The commands in the order they run."""
    python = sys.executable
    dvc = str(Path(python).parent / "dvc")
    commands = [Timed("whole", "dvc repro -f (whole pipeline)", [dvc, "repro", "-f"], heavy)]
    commands += [Timed(stage, f"dvc repro -f -s {stage}", [dvc, "repro", "-f", "-s", stage], heavy)
                 for stage in stages]
    commands += [
        Timed("notebook", "notebook fit (baseline process)", [python, "benchmarks/notebook_fit.py"], heavy),
        Timed("compare", "python -m pipeline compare", [python, "-m", "pipeline", "compare"], quick),
        Timed("help", "python -m pipeline --help", [python, "-m", "pipeline", "--help"], quick),
        Timed("noop", "dvc repro (nothing to do)", [dvc, "repro"], quick),
    ]
    return commands


def ratio(numerator: Timed | None, denominator: Timed | None) -> str:
    """Median wall over median wall, then the same for CPU seconds, which other processes disturb less."""
    if numerator is None or denominator is None:
        return ""
    return (f"{numerator.median_wall / denominator.median_wall:.2f} "
            f"(CPU {numerator.median_cpu / denominator.median_cpu:.2f})")


def seconds(value: float) -> str:
    """Two decimals below 10 s, where a start-up target of 1 s needs them; one above."""
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def table_rows(results: Sequence[Timed], stages: Sequence[str]) -> list[list[object]]:
    """One row per command: runs, median wall and CPU seconds, ratios, lines printed, target."""
    by_key = {timed.key: timed for timed in results}
    whole, notebook = by_key.get("whole"), by_key.get("notebook")
    rows = []
    for timed in results:
        of_whole = ratio(timed, whole) if timed.key in stages else ""
        of_notebook = ratio(timed, notebook) if timed.key == "train" else ""
        rows.append([timed.label, len(timed.wall), seconds(timed.median_wall), seconds(timed.median_cpu),
                     of_whole, of_notebook, timed.lines, TARGETS.get(timed.key, "")])
    return rows


HEADERS = ["command", "runs", "wall s (median)", "CPU s (median)", "/ whole", "/ notebook fit",
           "lines printed", "target (issue 11)"]


def describe(commit: str, dirty: bool, load_before: float, load_after: float) -> list[str]:
    """What the numbers were measured on: commit, machine, and how busy it was."""
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return [
        f"commit {commit[:10]}{' (work tree has uncommitted changes: not measured)' if dirty else ''}, {when}",
        (f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}; "
         f"1-min load average {load_before:.1f} before, {load_after:.1f} after (shared machine: expect noise)"),
    ]


def write_outputs(results: Sequence[Timed], folder: Path) -> None:
    """Each command's output (its last run) as ``<folder>/<key>.txt``."""
    folder.mkdir(parents=True, exist_ok=True)
    for timed in results:
        (folder / f"{timed.key}.txt").write_text(timed.output, encoding="utf-8")


def stage_names(clone: Path) -> list[str]:
    return list(yaml.safe_load((clone / "dvc.yaml").read_text(encoding="utf-8"))["stages"])


def measure(args: argparse.Namespace, clone: Path) -> tuple[list[Timed], list[str]]:
    """Clone, run every command its number of times, return the results and the header lines."""
    commit = clone_head(clone)
    known = stage_names(clone)
    stages = known if args.stages is None else [name for name in re.split(r"[,\s]+", args.stages) if name]
    unknown = [name for name in stages if name not in known]
    if unknown:
        raise BenchmarkError(f"--stages: no stage {', '.join(unknown)} in dvc.yaml (stages: {', '.join(known)})")
    env = command_env(clone, args.mirror)
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    load_before = os.getloadavg()[0]
    commands = plan(stages, args.repeats or HEAVY_REPEATS, args.repeats or QUICK_REPEATS)
    for timed in commands:
        if timed.key == "noop":  # stages run alone may leave later ones stale: settle first, untimed
            run_once(Timed("settle", "dvc repro", timed.argv, 1), clone, env)
        for _ in range(timed.repeats):
            run_once(timed, clone, env)
            print(f"  {timed.label}: {seconds(timed.wall[-1])} s", file=sys.stderr, flush=True)
    return commands, describe(commit, dirty, load_before, os.getloadavg()[0])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"runs of every command (default {HEAVY_REPEATS} for the pipeline-sized ones, "
                             f"{QUICK_REPEATS} for compare, --help and the no-op repro)")
    parser.add_argument("--stages", default=None, help="comma-separated stages to time alone (default: all)")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown to FILE")
    parser.add_argument("--mirror", type=Path, default=os.environ.get("MNIST_MIRROR") or None,
                        help="folder of the MNIST .gz files (default: $MNIST_MIRROR; else the public mirrors)")
    parser.add_argument("--save-output", type=Path, help="write each command's last output to DIR/<command>.txt")
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.mirror is not None:
        args.mirror = args.mirror.resolve()
        if not args.mirror.is_dir():
            parser.error(f"--mirror {args.mirror} is not a folder")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Measure in a temporary clone, print the table, optionally write it as Markdown."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pipeline-speed-", ignore_cleanup_errors=True) as scratch:
        try:
            results, header = measure(args, Path(scratch) / "repo")
        except BenchmarkError as error:
            print(f"pipeline_speed: error: {error}", file=sys.stderr)
            return 1
    stages = [timed.key for timed in results if timed.label.startswith("dvc repro -f -s")]
    rows = table_rows(results, stages)
    print("\n".join(header))
    print(tabulate(rows, HEADERS, tablefmt="simple", disable_numparse=True))
    if args.markdown:
        table = tabulate(rows, HEADERS, tablefmt="github", disable_numparse=True)
        args.markdown.write_text("\n\n".join(["  \n".join(header), table]) + "\n", encoding="utf-8")
    if args.save_output:
        write_outputs(results, args.save_output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
