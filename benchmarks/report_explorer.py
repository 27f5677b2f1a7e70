"""What the explorer page adds to the report stage: its time against the rest of the report's work, and its size.

Both in one process, on the trained model and the prepared test set, after one warm-up, through the
report stage's own steps (so a conditional model gets its labels and captions): (a) the report without
the explorer (encode z_mean, render the five figures and index.html, write them); (b) explorer.html
(decoder weights to float16, sample, render, write). Medians over ``--runs``.

    uv run python benchmarks/report_explorer.py [--runs 5] [--model models/vae.keras] [--prepared data/prepared]
"""

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.core.params import load_params
from pipeline.core.paths import MODEL_FILE, PARAMS_FILE, PREPARED_DIR
from pipeline.data.datasets import DATASETS
from pipeline.data.splits import load_split
from pipeline.model.trained_vae import load_trained_vae
from pipeline.reporting.report_files import (
    EXPLORER_FILE,
    HTML_FILE,
    render_explorer_page,
    render_figures,
    render_index,
    write_files,
)


def median_seconds(work: Callable[[], object], runs: int) -> float:
    work()  # warm-up: first predict traces the Keras function
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--params", type=Path, default=PARAMS_FILE)
    parser.add_argument("--model", type=Path, default=MODEL_FILE)
    parser.add_argument("--prepared", type=Path, default=PREPARED_DIR)
    args = parser.parse_args()
    params = load_params(args.params)
    vae = load_trained_vae(args.model)
    x_test, y_test = load_split(args.prepared, "test")
    class_names = DATASETS[params.data.dataset].class_names
    history = {"epoch": [1, 2], "loss": [2.0, 1.0], "neg_elbo": [2.0, 1.0], "kl_loss": [1.0, 1.0]}
    out = Path(tempfile.mkdtemp(prefix="report-bench-"))
    labels = y_test if vae.num_classes else None

    def report_without_explorer() -> None:
        z_mean = vae.encode_mean(x_test, labels)
        pngs = render_figures(params, vae, x_test, z_mean, y_test, history)
        page = render_index(params, vae, pngs, {}, "run")
        write_files(out, {**pngs, HTML_FILE: page.encode("utf-8")})

    def explorer() -> None:
        page = render_explorer_page(params, vae, z_mean, y_test, class_names)
        write_files(out, {EXPLORER_FILE: page.encode("utf-8")})

    z_mean = vae.encode_mean(x_test, labels)
    base = median_seconds(report_without_explorer, args.runs)
    added = median_seconds(explorer, args.runs)
    size = (out / EXPLORER_FILE).stat().st_size
    print(f"report without the explorer: {base:.3f} s (median of {args.runs})")
    print(f"explorer.html:               {added:.3f} s, {added / base:.1%} of that; {size / 1000:.0f} kB "
          f"({size} bytes)")


if __name__ == "__main__":
    main()
