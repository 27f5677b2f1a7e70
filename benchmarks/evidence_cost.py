"""What sample quality costs ``dvc repro -f``: the classifier stage and the sample metrics inside evaluate.

In a temporary clone of HEAD with a fresh MLflow store (as ``pipeline_speed.py``), it times the whole
``dvc repro -f``, the classifier stage alone (``dvc repro -f -s classifier``), and, in one process that has
already loaded TensorFlow as evaluate has, evaluate's ``sample_quality`` step (decoding the samples, the
classifier's features of both sets, FID with its bootstrap, precision, recall, coverage). Medians of wall and
CPU seconds over ``--repeats``; the share is (classifier stage + sample metrics) / whole, the whole including
both. Commit first: uncommitted changes are not measured.

    MNIST_MIRROR=$PWD/../shared/data/mnist uv run python benchmarks/evidence_cost.py [--repeats 3] [--markdown FILE]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline_speed import Timed, clone_head, command_env, run_once

SAMPLE_STEP = """
import json, sys, time
import numpy as np
from pipeline.core.params import load_params
from pipeline.data.datasets import DATASETS
from pipeline.data.splits import load_split
from pipeline.evaluate import sample_quality
from pipeline.model.trained_vae import load_trained_vae
from pipeline.sample_quality.classifier import load_classifier

params = load_params()
x, y = load_split("data/prepared", "test")
vae, extractor = load_trained_vae("models/vae.keras"), load_classifier("models/classifier.keras")
classes = len(DATASETS[params.data.dataset].class_names)
times = []
for _ in range(int(sys.argv[1])):
    cpu, wall = time.process_time(), time.perf_counter()
    sample_quality(params.evaluate, vae, extractor, x, y, classes)
    times.append((time.perf_counter() - wall, time.process_time() - cpu))
print(json.dumps(times))
"""


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args()
    mirror = Path(os.environ["MNIST_MIRROR"]).resolve() if os.environ.get("MNIST_MIRROR") else None
    dvc = str(Path(sys.executable).parent / "dvc")
    with tempfile.TemporaryDirectory(prefix="evidence-cost-") as folder:
        clone = Path(folder) / "clone"
        commit = clone_head(clone)
        env = command_env(clone, mirror)
        load_before = os.getloadavg()[0]
        whole = Timed("whole", "`dvc repro -f`, whole pipeline", [dvc, "repro", "-f"], args.repeats)
        classifier = Timed("classifier", "classifier stage (`dvc repro -f -s classifier`)",
                           [dvc, "repro", "-f", "-s", "classifier"], args.repeats)
        for _ in range(args.repeats):
            run_once(whole, clone, env)
            run_once(classifier, clone, env)
        done = subprocess.run([sys.executable, "-c", SAMPLE_STEP, str(args.repeats)], cwd=clone, env=env,
                              capture_output=True, text=True, check=True)
        samples = json.loads(done.stdout.strip().splitlines()[-1])
    sample_wall, sample_cpu = median([wall for wall, _ in samples]), median([cpu for _, cpu in samples])
    added_wall = classifier.median_wall + sample_wall
    added_cpu = classifier.median_cpu + sample_cpu
    rows = [
        (whole.label, whole.median_wall, whole.median_cpu, "1"),
        (classifier.label, classifier.median_wall, classifier.median_cpu,
         f"{classifier.median_wall / whole.median_wall:.1%} / {classifier.median_cpu / whole.median_cpu:.1%}"),
        ("sample metrics inside evaluate", sample_wall, sample_cpu,
         f"{sample_wall / whole.median_wall:.1%} / {sample_cpu / whole.median_cpu:.1%}"),
        ("both together", added_wall, added_cpu,
         f"{added_wall / whole.median_wall:.1%} / {added_cpu / whole.median_cpu:.1%}"),
    ]
    lines = [f"Commit {commit[:10]}, medians of {args.repeats}; load average {load_before:.1f} before, "
             f"{os.getloadavg()[0]:.1f} after.", "",
             "| what | wall s | CPU s | share of the whole (wall / CPU) |", "|:--|--:|--:|--:|"]
    lines += [f"| {label} | {wall:.1f} | {cpu:.1f} | {share} |" for label, wall, cpu, share in rows]
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
