"""Every file of the report, rendered in memory before any is written: the figures as PNGs, ``explorer.html``,
``index.html``, ``per_class.png`` and ``model_card.md``.

Rendering everything first means an error leaves the previous report whole; the stage itself (reading its inputs,
the MLflow run) stays in ``pipeline.report``.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.style
import numpy as np

from pipeline.core import atomic_files
from pipeline.core.errors import PipelineError
from pipeline.core.model_kind import model_kind
from pipeline.core.param_sections import ReportParams
from pipeline.core.params import Params
from pipeline.data.datasets import DATASETS
from pipeline.reporting import conditional_figures, figures
from pipeline.reporting.captions import captions
from pipeline.reporting.explorer import DecoderWeights, render_explorer
from pipeline.reporting.figure_sets import LatentCodec, draw_figures
from pipeline.reporting.html_page import ReportImage, render_html
from pipeline.reporting.page_sections import Evidence, class_picker_html

HTML_FILE = "index.html"
EXPLORER_FILE = "explorer.html"
MODEL_CARD_FILE = "model_card.md"
PER_CLASS_FIGURE = "per_class.png"


class ReportError(PipelineError):
    """An input of the report is missing or does not fit the model."""


def check_grid_dims(settings: ReportParams, latent_dim: int) -> None:
    """Refuse plotted dimensions the loaded model does not have (params were checked against params only);
    a 1-D latent space plots z₁ alone, whatever ``grid_dims`` says."""
    if latent_dim > 1 and max(settings.grid_dims) >= latent_dim:
        raise ReportError(f"report.grid_dims {list(settings.grid_dims)} do not index the model's "
                          f"{latent_dim} latent dimensions; retrain or change params")


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
