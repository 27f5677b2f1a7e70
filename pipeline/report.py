"""Stage ``report``: figures of the trained VAE, a one-page HTML report and the model card, added to the MLflow run.

The page also shows the gate's deltas against the metrics committed at git HEAD, the per-class −ELBO as a bar
chart, and the model card (``pipeline.reporting.model_card``), which goes to each logged model too. Params are
validated and the inputs read before Keras (on ``train.backend``) is imported, so a bad value or a missing file
fails before any model work starts.
"""

import argparse
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import matplotlib.style
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pipeline.core import atomic_files
from pipeline.core.backend import select_backend
from pipeline.core.cli import add_model_paths, run_stage, stage_parser
from pipeline.core.errors import PipelineError
from pipeline.core.metrics import read_metrics_file
from pipeline.core.model_kind import model_kind
from pipeline.core.param_sections import ReportParams
from pipeline.core.params import Params, load_params
from pipeline.core.paths import (
    CLASSIFIER_METRICS_FILE,
    DATA_STATS_FILE,
    METRICS_FILE,
    PER_CLASS_FILE,
    REPORTS_DIR,
    TRAIN_HISTORY_FILE,
)
from pipeline.data.datasets import DATASETS
from pipeline.data.splits import load_split
from pipeline.reporting import conditional_figures, figures
from pipeline.reporting.captions import CAPTIONS, CAPTIONS_1D, CONDITIONAL_CAPTIONS, captions
from pipeline.reporting.evidence import EvidenceSources, gather_evidence
from pipeline.reporting.explorer import DecoderWeights, render_explorer
from pipeline.reporting.html_page import ReportImage, render_html
from pipeline.reporting.page_sections import Evidence, class_picker_html

HTML_FILE = "index.html"
EXPLORER_FILE = "explorer.html"
MODEL_CARD_FILE = "model_card.md"
PER_CLASS_FIGURE = "per_class.png"
__all__ = ["CAPTIONS", "CAPTIONS_1D", "CONDITIONAL_CAPTIONS", "captions"]  # re-exported: the page's captions
class ReportError(PipelineError):
    """An input of the report is missing or does not fit the model."""


class LatentCodec(Protocol):
    """What the report needs from a model: z_mean of images, pixel means of latent points, their sizes.

    ``num_classes`` is 0 for the unconditional VAE; a conditional one takes class indices (n,) as
    ``labels`` in both methods. ``pipeline.model.trained_vae.TrainedVae`` is one; tests pass small numpy
    ones, without TensorFlow.
    """

    @property
    def latent_dim(self) -> int: ...

    @property
    def num_classes(self) -> int: ...

    def encode_mean(self, images: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray: ...

    def decode(self, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray: ...

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


def check_grid_dims(settings: ReportParams, latent_dim: int) -> None:
    """Refuse plotted dimensions the loaded model does not have (params were checked against params only);
    a 1-D latent space plots z₁ alone, whatever ``grid_dims`` says."""
    if latent_dim > 1 and max(settings.grid_dims) >= latent_dim:
        raise ReportError(f"report.grid_dims {list(settings.grid_dims)} do not index the model's "
                          f"{latent_dim} latent dimensions; retrain or change params")


def draw_figures(settings: ReportParams, vae: LatentCodec, x_test: np.ndarray, z_mean: np.ndarray,
                 y_test: np.ndarray, class_names: Sequence[str],
                 history: Mapping[str, Sequence[float]]) -> dict[str, Figure]:
    """Every figure of the report, keyed by its file name; ``z_mean`` (n, latent_dim) is ``x_test``'s.

    A 1-D latent space gets a strip along z₁ and a histogram by class instead of the grid and the scatter;
    a conditional VAE gets its own figures under the same names. The manifold spans ``manifold_range``.
    """
    settings = settings.model_copy(update={"grid_range": figures.manifold_range(settings, z_mean)})
    if vae.num_classes:
        return {**draw_conditional_figures(settings, vae, x_test, z_mean, y_test, class_names),
                "learning_curves.png": figures.learning_curves_figure(history)}
    n = min(settings.n_reconstructions, len(x_test))
    prior = np.random.default_rng(settings.seed).standard_normal((settings.n_samples, vae.latent_dim))
    return {
        **_latent_figures(settings, vae, z_mean, y_test, class_names),
        "reconstructions.png": figures.reconstructions_figure(x_test[:n], vae.decode(z_mean[:n])),
        "samples.png": figures.samples_figure(vae.decode(prior.astype(np.float32)), settings.seed),
        "learning_curves.png": figures.learning_curves_figure(history),
    }


def _latent_figures(settings: ReportParams, vae: LatentCodec, z_mean: np.ndarray, y_test: np.ndarray,
                    class_names: Sequence[str]) -> dict[str, Figure]:
    """The manifold and where the test images sit in latent space: on a plane, or along a line for 1-D."""
    if vae.latent_dim == 1:
        strip, z_values = figures.manifold_strip(vae.decode, settings.grid_size, settings.grid_range)
        return {
            "manifold.png": figures.manifold_strip_figure(strip, z_values),
            "latent_scatter.png": figures.latent_histogram_figure(z_mean, y_test, class_names, settings.grid_range),
        }
    dims = settings.grid_dims
    image, z_values = figures.manifold_grid(vae.decode, settings.grid_size, settings.grid_range,
                                            vae.latent_dim, dims)
    return {
        "manifold.png": figures.manifold_figure(image, z_values, vae.latent_dim, dims),
        "latent_scatter.png": figures.latent_scatter_figure(z_mean, y_test, class_names, dims, settings.grid_range),
    }


def draw_conditional_figures(settings: ReportParams, vae: LatentCodec, x_test: np.ndarray, z_mean: np.ndarray,
                             y_test: np.ndarray, class_names: Sequence[str]) -> dict[str, Figure]:
    """The conditional VAE's figures under the unconditional ones' names: the same latent points under each label.

    ``z_mean`` (n, latent_dim) is ``x_test``'s, encoded with its labels ``y_test``.
    """
    dims, classes = settings.grid_dims, vae.num_classes
    boards, z_values = conditional_figures.class_manifold_grids(vae.decode, classes, settings.grid_size,
                                                                settings.grid_range, vae.latent_dim, dims)
    n = min(settings.n_reconstructions, len(x_test))
    styles = conditional_figures.decode_under_every_class(vae.decode, z_mean[:n], classes)
    rng = np.random.default_rng(settings.seed)
    prior = rng.standard_normal((math.ceil(settings.n_samples / classes), vae.latent_dim)).astype(np.float32)
    samples = conditional_figures.decode_under_every_class(vae.decode, prior, classes)
    return {
        "manifold.png": conditional_figures.class_manifolds_figure(boards, z_values, vae.latent_dim, dims,
                                                                   class_names),
        "latent_scatter.png": figures.latent_scatter_figure(z_mean, y_test, class_names, dims,
                                                            settings.grid_range),
        "reconstructions.png": conditional_figures.styles_figure(x_test[:n], styles, y_test[:n], class_names),
        "samples.png": conditional_figures.class_samples_figure(samples, class_names, settings.seed),
    }


def render_report(params: Params, vae: LatentCodec, x_test: np.ndarray, y_test: np.ndarray,
                  history: Mapping[str, Sequence[float]], metrics: Mapping[str, object],
                  run_id: str, evidence: Evidence | None = None) -> dict[str, bytes]:
    """Every file of the report in memory, file name → bytes: the PNGs, ``explorer.html``, ``index.html`` and,
    with ``evidence`` holding one, ``model_card.md`` (and ``per_class.png`` with its per-class rows).

    Nothing is written, so an error (``ReportError``) leaves the previous report whole.
    """
    check_grid_dims(params.report, vae.latent_dim)
    evidence = evidence or Evidence()
    class_names = DATASETS[params.data.dataset].class_names
    z_mean = vae.encode_mean(x_test, y_test if vae.num_classes else None)
    pngs = render_figures(params, vae, x_test, z_mean, y_test, history)
    if evidence.per_class_rows:
        pngs[PER_CLASS_FIGURE] = figures.figure_png(figures.per_class_figure(evidence.per_class_rows))
    explorer = render_explorer_page(params, vae, z_mean, y_test, class_names)
    pickers = [class_picker_html(conditional_figures.one_class_manifold_pngs(
        vae.decode, params.report, figures.manifold_range(params.report, z_mean), vae.latent_dim, class_names))
    ] if vae.num_classes else []
    index = render_index(params, vae, pngs, metrics, run_id, evidence, pickers)
    card = {MODEL_CARD_FILE: evidence.model_card.encode("utf-8")} if evidence.model_card else {}
    return {**pngs, EXPLORER_FILE: explorer.encode("utf-8"), HTML_FILE: index.encode("utf-8"), **card}


def render_figures(params: Params, vae: LatentCodec, x_test: np.ndarray, z_mean: np.ndarray, y_test: np.ndarray,
                   history: Mapping[str, Sequence[float]]) -> dict[str, bytes]:
    """The figures of ``draw_figures`` as PNG bytes, keyed by file name, in matplotlib's default style: a
    ``matplotlibrc`` of the user's (in the working folder, ``$MPLCONFIGDIR`` or ``~/.config``) changes nothing."""
    class_names = DATASETS[params.data.dataset].class_names
    with matplotlib.style.context("default"):
        drawn = draw_figures(params.report, vae, x_test, z_mean, y_test, class_names, history)
        return {name: figures.figure_png(figure) for name, figure in drawn.items()}


def render_index(params: Params, vae: LatentCodec, pngs: Mapping[str, bytes], metrics: Mapping[str, object],
                 run_id: str, evidence: Evidence | None = None, extra_figures: Sequence[str] = ()) -> str:
    """``index.html``: the model's kind, the metrics, the baseline deltas, ``pngs`` with their captions, the report's
    params and the model card."""
    texts = captions(vae.latent_dim, bool(vae.num_classes))
    return render_html(params.data.dataset, run_id, metrics, params.read_by("report"),
                       [ReportImage(name, png, texts[name]) for name, png in pngs.items()], explorer=EXPLORER_FILE,
                       kind=model_kind(vae.num_classes), num_classes=vae.num_classes, evidence=evidence,
                       extra_figures=extra_figures)


def render_explorer_page(params: Params, vae: LatentCodec, z_mean: np.ndarray, labels: np.ndarray,
                         class_names: Sequence[str]) -> str:
    """The latent-space explorer page (the decoder in JavaScript over the test set's z_mean).

    A conditional decoder also takes the one-hot class, which the page's class picker sets. Raises
    ``ReportError`` when the model does not fit the page (e.g. weights beyond float16's range).
    """
    try:
        return render_explorer(DecoderWeights(*vae.decoder_dense_weights()), z_mean, labels, class_names,
                               params.report.grid_dims, params.report.grid_range,
                               title=f"Latent space explorer: {params.data.dataset}", seed=params.report.seed,
                               conditional=vae.num_classes > 0)
    except ValueError as error:
        raise ReportError(f"cannot write the explorer page: {error}") from None


def write_files(out: Path, files: Mapping[str, bytes]) -> list[Path]:
    """Write each of ``files`` (name → bytes) into ``out`` atomically, in order; return their paths."""
    for name, data in files.items():
        atomic_files.write_bytes(out / name, data)
    return [out / name for name in files]


def write_report(params: Params, vae: LatentCodec, x_test: np.ndarray, y_test: np.ndarray,
                 history: Mapping[str, Sequence[float]], metrics: Mapping[str, object], run_id: str,
                 out: Path, evidence: Evidence | None = None) -> list[Path]:
    """Render every file of the report, then write them into ``out``; return their paths."""
    return write_files(out, render_report(params, vae, x_test, y_test, history, metrics, run_id, evidence))


def report(params: Params, prepared: Path, model_file: Path, run_file: Path, metrics_file: Path,
           history_file: Path, out: Path, sources: EvidenceSources | None = None) -> list[Path]:
    """The stage: read every input, draw, write, then add the files to the training run and the card to its
    logged models.

    Keras runs on ``train.backend`` (``pipeline.core.backend``), as it did in the train stage."""
    select_backend(params.train.backend)
    history = read_history(history_file)
    metrics = read_metrics_file(metrics_file, ReportError)
    x_test, y_test = load_split(prepared, "test")
    from pipeline.tracking import logged_models  # MLflow loads here, after params and inputs are checked
    from pipeline.tracking.run_data import log_results
    from pipeline.tracking.run_file import open_training_run

    ref = open_training_run(run_file)
    from pipeline.model.trained_vae import load_trained_vae  # Keras loads here, once the run is known

    vae = load_trained_vae(model_file)
    evidence = gather_evidence(params, sources or EvidenceSources(), ref, metrics_file, metrics, vae.num_classes,
                               vae.latent_dim, len(x_test))
    written = write_report(params, vae, x_test, y_test, history, metrics, ref.run_id, out, evidence)
    log_results(ref, {}, artifacts=written, settings=params.section("report"))
    if evidence.model_card:
        logged_models.attach_file(ref.models, out / MODEL_CARD_FILE)
    return written


def _run(args: argparse.Namespace) -> None:
    sources = EvidenceSources(args.per_class, args.classifier_metrics, args.data_stats, args.lock)
    written = report(load_params(args.params), args.prepared, args.model, args.run, args.metrics, args.history,
                     args.out, sources)
    pages = ", ".join(str(path) for path in written if path.suffix == ".html")
    print(f"report: {pages} ({len(written)} files)")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline report [options]``: parse ``argv``, run, return the exit code (0, 1, or 130)."""
    parser = stage_parser("report", __doc__.splitlines()[0])
    add_model_paths(parser)
    parser.add_argument("--metrics", type=Path, default=METRICS_FILE, help="metrics.json from evaluate")
    parser.add_argument("--history", type=Path, default=TRAIN_HISTORY_FILE, help="per-epoch CSV from train")
    parser.add_argument("--out", type=Path, default=REPORTS_DIR,
                        help="folder for the PNGs, explorer.html, index.html and model_card.md")
    parser.add_argument("--per-class", type=Path, default=PER_CLASS_FILE, help="per-class CSV from evaluate")
    parser.add_argument("--classifier-metrics", type=Path, default=CLASSIFIER_METRICS_FILE,
                        help="the classifier stage's test accuracy, for the model card")
    parser.add_argument("--data-stats", type=Path, default=DATA_STATS_FILE, help="prepare's data statistics")
    parser.add_argument("--lock", type=Path, default=Path("dvc.lock"),
                        help="DVC's record of each stage's digests and params, for the model card")
    return run_stage("report", _run, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
