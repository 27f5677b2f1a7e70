"""Stage ``report``: figures of the trained VAE and a one-page HTML report, added to the MLflow run.

Params are validated and the inputs read before TensorFlow is imported, so a bad value or a
missing file fails before any model work starts.
"""

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pipeline.core import atomic_files
from pipeline.core.cli import add_model_paths, run_stage, stage_parser
from pipeline.core.errors import PipelineError
from pipeline.core.params import Params, ReportParams, load_params
from pipeline.core.paths import METRICS_FILE, REPORTS_DIR, TRAIN_HISTORY_FILE
from pipeline.data.datasets import DATASETS
from pipeline.data.splits import load_split
from pipeline.reporting import figures
from pipeline.reporting.explorer import DecoderWeights, render_explorer
from pipeline.reporting.html_page import ReportImage, write_html
from pipeline.tracking import runs

HTML_FILE = "index.html"
EXPLORER_FILE = "explorer.html"
CAPTIONS = {
    "manifold.png": "The decoder's mean image at each point of a regular latent grid.",
    "latent_scatter.png": "Where the encoder puts each test image (z_mean), coloured by its label.",
    "reconstructions.png": "Test images and the decoder mean at their z_mean.",
    "samples.png": "Decoder means for random latent points drawn from the prior.",
    "learning_curves.png": "Per-epoch losses from the train stage; training values are means over each epoch.",
}

class ReportError(PipelineError):
    """An input of the report is missing or does not fit the model."""


class LatentCodec(Protocol):
    """What the report needs from a model: z_mean of images, pixel means of latent points, the latent size.

    ``pipeline.model.loading.TrainedVae`` is one; tests pass small numpy ones, without TensorFlow.
    """

    @property
    def latent_dim(self) -> int: ...

    def encode_mean(self, images: np.ndarray) -> np.ndarray: ...

    def decode(self, z: np.ndarray) -> np.ndarray: ...

    def decoder_dense_weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...


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


def check_grid_dims(settings: ReportParams, latent_dim: int) -> None:
    """Refuse plotted dimensions the loaded model does not have (params were checked against params only)."""
    if max(settings.grid_dims) >= latent_dim:
        raise ReportError(f"report.grid_dims {list(settings.grid_dims)} do not index the model's "
                          f"{latent_dim} latent dimensions; retrain or change params")


def draw_figures(settings: ReportParams, vae: LatentCodec, x_test: np.ndarray, z_mean: np.ndarray,
                 y_test: np.ndarray, class_names: Sequence[str],
                 history: Mapping[str, Sequence[float]]) -> dict[str, Figure]:
    """Every figure of the report, keyed by its file name; ``z_mean`` (n, latent_dim) is ``x_test``'s."""
    dims = settings.grid_dims
    image, z_values = figures.manifold_grid(vae.decode, settings.grid_size, settings.grid_range,
                                            vae.latent_dim, dims)
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


def write_report(params: Params, vae: LatentCodec, x_test: np.ndarray, y_test: np.ndarray,
                 history: Mapping[str, Sequence[float]], metrics: Mapping[str, object], run_id: str,
                 out: Path) -> list[Path]:
    """Write the PNGs, ``explorer.html`` and ``index.html`` into ``out``, each atomically; return their paths."""
    class_names = DATASETS[params.data.dataset].class_names
    check_grid_dims(params.report, vae.latent_dim)
    z_mean = vae.encode_mean(x_test)
    drawn = draw_figures(params.report, vae, x_test, z_mean, y_test, class_names, history)
    images = [figures.save_figure(figure, out / name) for name, figure in drawn.items()]
    explorer = write_explorer(out / EXPLORER_FILE, params, vae, z_mean, y_test, class_names)
    page = write_html(out / HTML_FILE, params.data.dataset, run_id, metrics, params.read_by("report"),
                      [ReportImage(path, CAPTIONS[path.name]) for path in images], explorer=EXPLORER_FILE)
    return [*images, explorer, page]


def write_explorer(target: Path, params: Params, vae: LatentCodec, z_mean: np.ndarray, labels: np.ndarray,
                   class_names: Sequence[str]) -> Path:
    """The latent-space explorer page (the decoder in JavaScript over the test set's z_mean), written atomically."""
    try:
        page = render_explorer(DecoderWeights(*vae.decoder_dense_weights()), z_mean, labels, class_names,
                               params.report.grid_dims, params.report.grid_range,
                               title=f"Latent space explorer: {params.data.dataset}", seed=params.report.seed)
    except ValueError as error:
        raise ReportError(f"cannot write the explorer page: {error}") from None
    atomic_files.write_text(target, page)
    return target


def report(params: Params, prepared: Path, model_file: Path, run_file: Path, metrics_file: Path,
           history_file: Path, out: Path) -> list[Path]:
    """The stage: read every input, draw, write, then add the files to the training run."""
    history = read_history(history_file)
    metrics = read_metrics(metrics_file)
    x_test, y_test = load_split(prepared, "test")
    ref = runs.open_training_run(run_file)
    from pipeline.model.loading import load_trained_vae  # TensorFlow loads here, after validation

    written = write_report(params, load_trained_vae(model_file), x_test, y_test, history, metrics,
                           ref.run_id, out)
    runs.log_results(ref, {}, artifacts=written, settings=params.section("report"))
    return written


def _run(args: argparse.Namespace) -> None:
    report(load_params(args.params), args.prepared, args.model, args.run, args.metrics, args.history, args.out)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline report [options]``: parse ``argv``, run, return the exit code (0, 1, or 130)."""
    parser = stage_parser("report", __doc__.splitlines()[0])
    add_model_paths(parser)
    parser.add_argument("--metrics", type=Path, default=METRICS_FILE, help="metrics.json from evaluate")
    parser.add_argument("--history", type=Path, default=TRAIN_HISTORY_FILE, help="per-epoch CSV from train")
    parser.add_argument("--out", type=Path, default=REPORTS_DIR,
                        help="folder for the PNGs, explorer.html and index.html")
    return run_stage("report", _run, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
