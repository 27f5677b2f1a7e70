"""Stage ``report``: figures of the trained VAE and a one-page HTML report, added to the MLflow run.

Params are validated and the inputs read before TensorFlow is imported, so a bad value or a
missing file fails before any model work starts.
"""

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pipeline import figures, tracking
from pipeline.cli import add_model_paths, run_stage, stage_parser
from pipeline.datasets import DATASETS
from pipeline.errors import PipelineError
from pipeline.html_report import ReportImage, write_html
from pipeline.params import Params, ReportParams, load_params
from pipeline.paths import METRICS_FILE, REPORTS_DIR, TRAIN_HISTORY_FILE
from pipeline.prepared import load_split

PREDICT_BATCH_SIZE = 1000
HTML_FILE = "index.html"
CAPTIONS = {
    "manifold.png": "The decoder's mean image at each point of a regular latent grid.",
    "latent_scatter.png": "Where the encoder puts each test image (z_mean), coloured by its label.",
    "reconstructions.png": "Test images and the decoder mean at their z_mean.",
    "samples.png": "Decoder means for random latent points drawn from the prior.",
    "learning_curves.png": "Per-epoch losses from the train stage; training values are means over each epoch.",
}

PredictFn = Callable[[np.ndarray], np.ndarray]


class ReportError(PipelineError):
    """An input of the report is missing or does not fit the model."""


@dataclass(frozen=True)
class Vae:
    """What the report needs from the model: two batched functions and the latent size."""

    encode_mean: PredictFn
    decode: PredictFn
    latent_dim: int


def load_vae_parts(model_file: Path) -> Vae:
    """Load the saved VAE; its encoder (``z_mean`` only) and decoder as batched predict functions."""
    if not model_file.is_file():
        raise ReportError(f"{model_file} not found; run the train stage first")
    from pipeline.model import load_vae  # TensorFlow loads here, after validation

    vae = load_vae(str(model_file))
    encoder, decoder = vae.get_layer("encoder"), vae.get_layer("decoder")
    return Vae(
        encode_mean=lambda x: encoder.predict(x, batch_size=PREDICT_BATCH_SIZE, verbose=0)[0],
        decode=lambda z: decoder.predict(z, batch_size=PREDICT_BATCH_SIZE, verbose=0),
        latent_dim=int(decoder.input_shape[-1]),
    )


def read_history(path: Path) -> pd.DataFrame:
    """The per-epoch CSV written by the train stage."""
    try:
        history = pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise ReportError(f"cannot read the training history {path}: {error}") from None
    missing = {"epoch", "loss", "neg_elbo", "kl_loss"} - set(history.columns)
    if missing or history.empty:
        raise ReportError(f"{path}: expected per-epoch rows with columns epoch, loss, neg_elbo, kl_loss "
                          f"(missing {sorted(missing)})")
    return history


def read_metrics(path: Path) -> dict[str, object]:
    """The evaluate stage's metrics as a mapping."""
    try:
        metrics = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ReportError(f"cannot read the metrics {path}: {error}") from None
    if not isinstance(metrics, dict):
        raise ReportError(f"{path}: expected a JSON object of metrics, got {type(metrics).__name__}")
    return metrics


def draw_figures(settings: ReportParams, vae: Vae, x_test: np.ndarray, y_test: np.ndarray,
                 class_names: Sequence[str], history: Mapping[str, Sequence[float]]) -> dict[str, Figure]:
    """Every figure of the report, keyed by its file name."""
    if max(settings.grid_dims) >= vae.latent_dim:
        raise ReportError(f"report.grid_dims {list(settings.grid_dims)} do not index the model's "
                          f"{vae.latent_dim} latent dimensions; retrain or change params")
    dims = settings.grid_dims
    image, z_values = figures.manifold_grid(vae.decode, settings.grid_size, settings.grid_range,
                                            vae.latent_dim, dims)
    z_mean = vae.encode_mean(x_test)
    n = min(settings.n_reconstructions, len(x_test))
    prior = np.random.default_rng(settings.seed).standard_normal((settings.n_samples, vae.latent_dim))
    return {
        "manifold.png": figures.manifold_figure(image, z_values, vae.latent_dim, dims),
        "latent_scatter.png": figures.latent_scatter_figure(z_mean, y_test, class_names, dims,
                                                            settings.grid_range),
        "reconstructions.png": figures.reconstructions_figure(x_test[:n], vae.decode(z_mean[:n])),
        "samples.png": figures.samples_figure(vae.decode(prior.astype(np.float32)), settings.seed),
        "learning_curves.png": figures.learning_curves_figure(history),
    }


# The CI gate's tolerances say nothing about this model, and leaving them out means a changed
# tolerance does not re-render the report.
GATE_SECTION = frozenset({"check"})


def write_report(params: Params, vae: Vae, x_test: np.ndarray, y_test: np.ndarray,
                 history: Mapping[str, Sequence[float]], metrics: Mapping[str, object], run_id: str,
                 out: Path) -> list[Path]:
    """Write the PNGs and ``index.html`` into ``out``, each atomically; return their paths."""
    class_names = DATASETS[params.data.dataset].class_names
    drawn = draw_figures(params.report, vae, x_test, y_test, class_names, history)
    images = [figures.save_figure(figure, out / name) for name, figure in drawn.items()]
    page = write_html(out / HTML_FILE, params.data.dataset, run_id, metrics, params.flat(exclude=GATE_SECTION),
                      [ReportImage(path, CAPTIONS[path.name]) for path in images])
    return [*images, page]


def report(params: Params, prepared: Path, model_file: Path, run_file: Path, metrics_file: Path,
           history_file: Path, out: Path) -> list[Path]:
    """The stage: read every input, draw, write, then add the files to the training run."""
    history = read_history(history_file)
    metrics = read_metrics(metrics_file)
    x_test, y_test = load_split(prepared, "test")
    ref = tracking.open_training_run(run_file)
    written = write_report(params, load_vae_parts(model_file), x_test, y_test, history, metrics,
                           ref.run_id, out)
    tracking.log_results(ref, {}, artifacts=written, settings=params.section("report"))
    return written


def _run(args: argparse.Namespace) -> None:
    report(load_params(args.params), args.prepared, args.model, args.run, args.metrics, args.history, args.out)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline.report``."""
    parser = stage_parser("report", __doc__.splitlines()[0])
    add_model_paths(parser)
    parser.add_argument("--metrics", type=Path, default=METRICS_FILE, help="metrics.json from evaluate")
    parser.add_argument("--history", type=Path, default=TRAIN_HISTORY_FILE, help="per-epoch CSV from train")
    parser.add_argument("--out", type=Path, default=REPORTS_DIR, help="folder for the PNGs and index.html")
    return run_stage("report", _run, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
