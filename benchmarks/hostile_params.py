"""Seconds to refuse each hostile params file, against reading the project's own params.yaml, in one process.

The hostile files are those of ``tests/test_params_yaml.py`` (nested aliases of 9 and 10 levels, merge keys,
a recursive alias, deep nesting, an oversized file, huge scalars and keys, bytes that are not UTF-8). Each is
written to a temporary folder and read with ``load_params`` ``--repeats`` times, alternating with the real
params.yaml; medians are printed with their ratio to it.

    uv run python benchmarks/hostile_params.py [--repeats 5]
"""

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pipeline.core.params import ParamsError, load_params
from pipeline.core.paths import PARAMS_FILE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_params_yaml import HOSTILE, write_hostile  # the tested files, not copies of them


def seconds(path: Path) -> float:
    started = time.perf_counter()
    with contextlib.suppress(ParamsError):
        load_params(path)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        files = {"params.yaml (baseline)": PARAMS_FILE}
        for name, (text, _) in HOSTILE.items():
            files[name] = write_hostile(Path(scratch) / f"{name}.yaml", text)
        sizes = {name: path.stat().st_size for name, path in files.items()}
        timings: dict[str, list[float]] = {name: [] for name in files}
        for _ in range(args.repeats):  # alternate, so load on the machine hits every file alike
            for name, path in files.items():
                timings[name].append(seconds(path))
    baseline = statistics.median(timings["params.yaml (baseline)"])
    for name, runs in timings.items():
        median = statistics.median(runs)
        print(f"{name:24s} {median * 1000:8.1f} ms  {median / baseline:6.1f}x the baseline  "
              f"(median of {args.repeats}, {sizes[name]} bytes)")


if __name__ == "__main__":
    main()
