"""Backend equivalence: test −ELBO and −log p(x) of the default model trained on TensorFlow and on JAX.

The random streams differ between backends (initial weights, sampling noise), so single runs differ;
what must agree is the spread. For each backend and each ``--seeds`` (default 42, 43, 44: the default
``train.seed`` and the next two) this runs the train and evaluate stages as processes on the prepared data
with otherwise default params, in a temporary folder with its own MLflow store, and prints each run's
metrics, each backend's mean and sample standard deviation, and the difference of the means in units of
the pooled standard deviation.

    uv run python benchmarks/backend_equivalence.py [--seeds 42 43 44] [--prepared data/prepared]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml
from tabulate import tabulate

REPO_ROOT = Path(__file__).resolve().parent.parent
METRICS = ("test_neg_elbo", "test_nll_is")
STAGE_TIMEOUT_S = 1200


def run_stages(backend: str, seed: int, params: dict, prepared: Path, env: dict[str, str]) -> dict[str, float]:
    """Train and evaluate with ``train.backend`` and ``train.seed`` set; the test metrics."""
    with tempfile.TemporaryDirectory(prefix=f"equivalence-{backend}-{seed}-") as folder:
        root = Path(folder)
        (root / "params.yaml").write_text(yaml.safe_dump(
            {**params, "train": {**params["train"], "backend": backend, "seed": seed}}))
        for stage in ("train", "evaluate"):
            answer = subprocess.run([sys.executable, "-m", f"pipeline.{stage}", "--params", "params.yaml",
                                     "--prepared", str(prepared)], cwd=root, capture_output=True, text=True,
                                    env={**env, "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db"},
                                    timeout=STAGE_TIMEOUT_S)
            if answer.returncode:
                raise SystemExit(f"{stage} on {backend}, seed {seed}, failed:\n{answer.stderr[-3000:]}")
        return json.loads((root / "reports" / "metrics.json").read_text())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--prepared", type=Path, default=REPO_ROOT / "data" / "prepared")
    parser.add_argument("--params", type=Path, default=REPO_ROOT / "params.yaml")
    args = parser.parse_args(argv)
    params = yaml.safe_load(args.params.read_text())
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("KERAS_", "MLFLOW_", "DVC_"))} | {"PYTHONPATH": str(REPO_ROOT)}
    results = {backend: {seed: run_stages(backend, seed, params, args.prepared.resolve(), env)
                         for seed in args.seeds} for backend in ("tensorflow", "jax")}
    rows = [[backend, seed, *(f"{metrics[name]:.2f}" for name in METRICS)]
            for backend, by_seed in results.items() for seed, metrics in by_seed.items()]
    summary = {backend: {name: [metrics[name] for metrics in by_seed.values()] for name in METRICS}
               for backend, by_seed in results.items()}
    for backend, values in summary.items():
        rows.append([backend, "mean ± sd", *(f"{statistics.mean(values[name]):.2f} ± "
                                             f"{statistics.stdev(values[name]):.2f}" for name in METRICS)])
    print(f"train.epochs {params['train']['epochs']}, seeds {args.seeds}, load average "
          f"{' '.join(f'{value:.2f}' for value in os.getloadavg())}")
    print(tabulate(rows, headers=["backend", "train.seed", *METRICS], tablefmt="github"))
    for name in METRICS:
        tf, jax = summary["tensorflow"][name], summary["jax"][name]
        pooled = ((statistics.variance(tf) + statistics.variance(jax)) / 2) ** 0.5
        difference = statistics.mean(jax) - statistics.mean(tf)
        print(f"{name}: JAX − TF = {difference:+.2f} nats, {difference / pooled:+.2f} pooled sd; seed ranges "
              f"TF [{min(tf):.2f}, {max(tf):.2f}], JAX [{min(jax):.2f}, {max(jax):.2f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
