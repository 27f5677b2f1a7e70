"""The report stage: manifold orientation, one batched decode, figure sizes, the HTML page, a real run."""

import base64
import html
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO_ROOT, assert_figures, pipeline_imports, random_images

from pipeline.core.params import Params, parse_params
from pipeline.report import main, read_history
from pipeline.reporting import figures
from pipeline.reporting.captions import CAPTIONS, captions
from pipeline.reporting.explorer import MAX_POINTS, sample_points
from pipeline.reporting.figure_sets import draw_figures
from pipeline.reporting.html_page import data_uri
from pipeline.reporting.report_files import EXPLORER_FILE, HTML_FILE, MODEL_CARD_FILE, ReportError, write_report

FIGURE_SIZES = {
    "manifold.png": figures.MANIFOLD_SIZE,
    "latent_scatter.png": figures.SCATTER_SIZE,
    "reconstructions.png": figures.RECONSTRUCTIONS_SIZE,
    "samples.png": figures.SAMPLES_SIZE,
    "learning_curves.png": figures.CURVES_SIZE,
}
METRICS = {"active_units": 2, "test_kl_loss": 6.25, "test_neg_elbo": 171.123456, "test_nll_is": 165.5}
HISTORY_CSV = (
    "epoch,loss,reconstruction_loss,kl_loss,neg_elbo,val_loss,val_reconstruction_loss,val_kl_loss,"
    "val_neg_elbo,seconds\n"
    "1,190.0,185.0,25.0,210.0,170.0,168.0,12.0,180.0,3.0\n"
    "2,165.0,163.0,12.5,175.5,162.0,160.5,12.7,173.2,1.0\n"
)


def coordinate_decoder(z: np.ndarray) -> np.ndarray:
    """A stand-in decoder whose image spells out its input: tile row ``i`` holds ``z[i]``."""
    latent_dim = z.shape[1]
    return np.repeat(z, latent_dim, axis=1)


def tile(image: np.ndarray, row: int, col: int, side: int) -> np.ndarray:
    return image[row * side:(row + 1) * side, col * side:(col + 1) * side]


def test_manifold_top_left_tile_has_smallest_z1_and_largest_z2() -> None:
    image, z_values = figures.manifold_grid(coordinate_decoder, 5, (-2.0, 2.0), 2, (0, 1))
    assert image.shape == (10, 10)
    np.testing.assert_allclose(z_values, [-2, -1, 0, 1, 2])
    np.testing.assert_allclose(tile(image, 0, 0, 2), [[-2, -2], [2, 2]])
    np.testing.assert_allclose(tile(image, 4, 4, 2), [[2, 2], [-2, -2]])
    np.testing.assert_allclose(tile(image, 0, 4, 2), [[2, 2], [2, 2]])


def test_every_manifold_tile_equals_the_decoder_output_at_its_z() -> None:
    grid_size = 4
    image, z_values = figures.manifold_grid(coordinate_decoder, grid_size, (-3.0, 1.0), 2, (0, 1))
    for row in range(grid_size):
        for col in range(grid_size):
            z = np.array([[z_values[col], z_values[grid_size - 1 - row]]], dtype=np.float32)
            np.testing.assert_allclose(tile(image, row, col, 2), coordinate_decoder(z).reshape(2, 2))


def test_manifold_decodes_the_whole_grid_in_one_call() -> None:
    batches = []

    def counting_decoder(z: np.ndarray) -> np.ndarray:
        batches.append(len(z))
        return coordinate_decoder(z)

    figures.manifold_grid(counting_decoder, 30, (-3.0, 3.0), 2, (0, 1))
    assert batches == [900]


def test_manifold_in_three_latent_dims_spans_grid_dims_with_the_rest_at_zero() -> None:
    image, _ = figures.manifold_grid(coordinate_decoder, 3, (-1.0, 1.0), 3, (2, 0))
    top_left = tile(image, 0, 0, 3)  # rows of a tile: z[0], z[1], z[2]
    np.testing.assert_allclose(top_left, [[1, 1, 1], [0, 0, 0], [-1, -1, -1]])
    bottom_right = tile(image, 2, 2, 3)
    np.testing.assert_allclose(bottom_right, [[-1, -1, -1], [0, 0, 0], [1, 1, 1]])
    assert np.all(image[3::9] == 0.0)  # the middle row of every tile is z[1], held at 0


def test_manifold_ticks_sit_on_tile_centres_labelled_with_their_z() -> None:
    image, z_values = figures.manifold_grid(coordinate_decoder, 30, (-3.0, 3.0), 2, (0, 1))
    axes = figures.manifold_figure(image, z_values, 2, (0, 1)).axes[0]
    x_labels = [label.get_text() for label in axes.get_xticklabels()]
    y_labels = [label.get_text() for label in axes.get_yticklabels()]
    assert y_labels[0] == "3.00" and y_labels[-1] == "-3.00"  # image rows run downwards: top is z₂ = 3
    assert x_labels == ["-3.00", "-1.76", "-0.52", "0.52", "1.76", "3.00"]  # symmetric, both ends
    for position, label in zip(axes.get_xticks(), x_labels, strict=True):
        column, offset = divmod(position, 2)
        assert offset == 0.5 and f"{z_values[int(column)]:.2f}" == label  # centre of a 2-pixel tile


@dataclass(frozen=True)
class LinearCodec:
    """A numpy stand-in for a trained VAE: linear encoder, logistic decoder, no TensorFlow."""

    encode_weights: np.ndarray
    decode_weights: np.ndarray

    @property
    def latent_dim(self) -> int:
        return self.encode_weights.shape[1]

    @property
    def num_classes(self) -> int:
        return 0

    def encode_mean(self, images: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        assert labels is None, "an unconditional model is never given labels"
        return images @ self.encode_weights

    def decode(self, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        assert labels is None, "an unconditional model is never given labels"
        return 1 / (1 + np.exp(-(np.asarray(z) @ self.decode_weights)))

    def decoder_dense_weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``decode`` as dense, relu, dense: z · W = relu(z) · W + relu(-z) · (-W)."""
        identity = np.eye(self.latent_dim)
        return (np.hstack([identity, -identity]), np.zeros(2 * self.latent_dim),
                np.vstack([self.decode_weights, -self.decode_weights]), np.zeros(self.decode_weights.shape[1]))


def fake_vae(latent_dim: int = 2, seed: int = 0) -> LinearCodec:
    rng = np.random.default_rng(seed)
    return LinearCodec(rng.normal(0, 0.1, (784, latent_dim)), rng.normal(0, 1.0, (latent_dim, 784)))


def small_params(latent_dim: int = 2, grid_dims: tuple[int, int] = (0, 1)) -> Params:
    return parse_params({
        "model": {"latent_dim": latent_dim},
        "report": {"grid_size": 6, "grid_dims": list(grid_dims), "n_reconstructions": 5, "n_samples": 10,
                   "manifold_range": "fixed"},
    })


def sample_data(n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    return random_images(n, seed=1), (np.arange(n) % 10).astype(np.uint8)


def write_fake_report(out: Path, latent_dim: int = 2, grid_dims: tuple[int, int] = (0, 1)) -> list[Path]:
    x, y = sample_data()
    history = {"epoch": [1, 2], "loss": [190.0, 165.0], "neg_elbo": [210.0, 175.5], "kl_loss": [25.0, 12.5],
               "val_loss": [170.0, 162.0], "val_neg_elbo": [180.0, 173.2], "val_kl_loss": [12.0, 12.7]}
    params = small_params(latent_dim=latent_dim, grid_dims=grid_dims)
    return write_report(params, fake_vae(latent_dim), x, y, history, METRICS, "run<&>42", out)


def test_figures_have_the_fixed_pixel_size_and_are_not_blank(tmp_path: Path) -> None:
    written = write_fake_report(tmp_path)
    assert sorted(path.name for path in written) == sorted([*FIGURE_SIZES, EXPLORER_FILE, HTML_FILE])
    assert_figures(tmp_path, FIGURE_SIZES)
    assert not list(tmp_path.glob(".*tmp*")), "a temporary file was left behind"


def test_index_embeds_every_image_and_lists_every_metric_params_and_escaped_run_id(tmp_path: Path) -> None:
    write_fake_report(tmp_path)
    page = (tmp_path / HTML_FILE).read_text(encoding="utf-8")
    for name in FIGURE_SIZES:
        png = data_uri((tmp_path / name).read_bytes())
        assert png in page and f'alt="{name}"' in page and html.escape(CAPTIONS[name]) in page
    for key in METRICS:
        assert f"<code>{key}</code>" in page
    assert "171.123" in page and "run&lt;&amp;&gt;42" in page and "run<&>42" not in page
    assert "<code>report.grid_size</code>" in page and "<strong>mnist</strong>" in page
    assert "src=\"http" not in page and "src=\"file" not in page  # self-contained
    assert f'<a id="explorer-link" href="{EXPLORER_FILE}">' in page


def test_index_names_the_unconditional_vae_and_the_likelihood_its_metrics_bound(tmp_path: Path) -> None:
    write_fake_report(tmp_path)
    page = (tmp_path / HTML_FILE).read_text(encoding="utf-8")
    assert "<title>Unconditional VAE report: mnist</title>" in page
    assert "the unconditional VAE;" in page and "estimates −log p(x), in nats per test image" in page
    assert "p(x|y)" not in page


class OverflowingCodec(LinearCodec):
    """Draws like ``LinearCodec``, but its decoder's hidden bias is beyond float16, which the explorer embeds."""

    def decoder_dense_weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        hidden_kernel, hidden_bias, output_kernel, output_bias = super().decoder_dense_weights()
        return hidden_kernel, hidden_bias + 1e6, output_kernel, output_bias


@pytest.mark.integration  # the whole report stage, twice
@pytest.mark.parametrize("failing", ["explorer", "index"])
def test_a_report_that_cannot_render_leaves_the_previous_one_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    """The figures, explorer.html and index.html render before any file is written: no new PNGs beside old pages."""
    write_fake_report(tmp_path)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    other = fake_vae(seed=7)
    codec = OverflowingCodec(other.encode_weights, other.decode_weights) if failing == "explorer" else other
    if failing == "index":
        def unwritable(*args: object, **kwargs: object) -> str:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr("pipeline.reporting.report_files.render_html", unwritable)
    with pytest.raises(ReportError if failing == "explorer" else OSError):
        write_report(small_params(), codec, *sample_data(), {"epoch": [1], "loss": [1.0], "neg_elbo": [1.0],
                                                              "kl_loss": [1.0]}, METRICS, "run-2", tmp_path)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_explorer_page_runs_the_models_decoder_over_its_z_mean(tmp_path: Path) -> None:
    write_fake_report(tmp_path, latent_dim=3, grid_dims=(2, 1))
    page = (tmp_path / EXPLORER_FILE).read_text(encoding="utf-8")
    data = json.loads(page.split("const EXPLORER_DATA = ", 1)[1].split(";</script>", 1)[0])
    vae, (x, y) = fake_vae(3), sample_data()
    hidden_kernel, _, output_kernel, _ = vae.decoder_dense_weights()
    embedded = [np.frombuffer(base64.b64decode(text), "<f2") for text in data["weights"]]
    np.testing.assert_array_equal(embedded[0], hidden_kernel.astype(np.float16).ravel())
    np.testing.assert_array_equal(embedded[2], output_kernel.astype(np.float16).ravel())
    rows = sample_points(x, y, MAX_POINTS, seed=small_params().report.seed)
    points = np.frombuffer(base64.b64decode(data["points"]), "<f2").reshape(-1, 2)
    np.testing.assert_array_equal(points, vae.encode_mean(x)[rows][:, [2, 1]].astype(np.float16))
    assert data["dims"] == [2, 1] and data["classNames"] == [str(k) for k in range(10)]


def test_the_codec_stand_in_is_the_dense_relu_dense_decoder_it_embeds() -> None:
    vae = fake_vae(2)
    hidden_kernel, hidden_bias, output_kernel, output_bias = vae.decoder_dense_weights()
    z = np.random.default_rng(3).normal(0, 2, (50, 2))
    logits = np.maximum(z @ hidden_kernel + hidden_bias, 0) @ output_kernel + output_bias
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), vae.decode(z), rtol=1e-12)


def test_latent_dim_three_report_decodes_and_plots_grid_dims_only() -> None:
    decoded = []

    class RecordingCodec(LinearCodec):
        def decode(self, z: np.ndarray) -> np.ndarray:
            decoded.append(np.array(z))
            return super().decode(z)

    linear = fake_vae(3)
    vae = RecordingCodec(linear.encode_weights, linear.decode_weights)

    x, y = sample_data()
    drawn = draw_figures(small_params(latent_dim=3, grid_dims=(2, 1)).report,
                         vae, x, vae.encode_mean(x), y, [str(k) for k in range(10)],
                         {"epoch": [1], "loss": [1.0], "neg_elbo": [1.0], "kl_loss": [1.0]})
    grid = decoded[0]
    assert grid.shape == (36, 3) and np.all(grid[:, 0] == 0)
    assert grid[0, 2] == -3.0 and grid[0, 1] == 3.0  # top-left tile: smallest z₃, largest z₂
    scatter = drawn["latent_scatter.png"].axes[0].collections[0].get_offsets()
    z_mean = vae.encode_mean(x)
    np.testing.assert_allclose(np.sort(scatter[:, 0]), np.sort(z_mean[:, 2]), rtol=1e-6)
    np.testing.assert_allclose(np.sort(scatter[:, 1]), np.sort(z_mean[:, 1]), rtol=1e-6)


class RecordingCodec(LinearCodec):
    """Keeps every batch of latent points it decodes."""

    def __init__(self, latent_dim: int) -> None:
        linear = fake_vae(latent_dim)
        super().__init__(linear.encode_weights, linear.decode_weights)
        object.__setattr__(self, "decoded", [])

    def decode(self, z: np.ndarray) -> np.ndarray:
        self.decoded.append(np.array(z))
        return super().decode(z)


def test_latent_dim_one_report_decodes_a_strip_along_z1_and_histograms_z_mean_by_class() -> None:
    """``model.latent_dim: 1`` with the default ``report.grid_dims: [0, 1]``: grid_dims is not used."""
    vae = RecordingCodec(1)
    x, y = sample_data()
    params = small_params(latent_dim=1)
    drawn = draw_figures(params.report, vae, x, vae.encode_mean(x), y, [str(k) for k in range(10)],
                         {"epoch": [1], "loss": [1.0], "neg_elbo": [1.0], "kl_loss": [1.0]})
    strip = vae.decoded[0]
    np.testing.assert_allclose(strip, np.linspace(-3.0, 3.0, 6, dtype=np.float32)[:, None])
    [image] = drawn["manifold.png"].axes[0].get_images()
    assert image.get_array().shape == (28, 6 * 28)
    np.testing.assert_allclose(image.get_array()[:, :28], vae.decode(strip[:1]).reshape(28, 28), rtol=1e-6)
    histogram = drawn["latent_scatter.png"].axes[0]
    heights = [sum(patch.get_height() for patch in container.patches) for container in histogram.containers]
    assert heights == [float(np.sum(y == k)) for k in range(10)]  # one stacked layer per class, every image counted
    assert histogram.get_xlabel() == "$z_{1}$"


def test_latent_dim_one_report_has_the_fixed_pixel_sizes_and_captions_of_a_1d_space(tmp_path: Path) -> None:
    written = write_fake_report(tmp_path, latent_dim=1)
    assert sorted(path.name for path in written) == sorted([*FIGURE_SIZES, EXPLORER_FILE, HTML_FILE])
    sizes = {**FIGURE_SIZES, "manifold.png": figures.STRIP_SIZE}
    assert_figures(tmp_path, sizes)
    page = (tmp_path / HTML_FILE).read_text(encoding="utf-8")
    for name in sizes:
        assert html.escape(captions(1)[name]) in page
    assert captions(1)["manifold.png"] != captions(2)["manifold.png"]


def test_grid_dims_beyond_the_models_latent_dims_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="grid_dims"):
        write_report(small_params(latent_dim=3, grid_dims=(2, 1)), fake_vae(2), *sample_data(), {}, {}, "run",
                     tmp_path)


def test_history_without_the_loss_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_text("epoch,seconds\n1,2.0\n")
    with pytest.raises(ReportError, match="kl_loss"):
        read_history(path)
    path.write_text(HISTORY_CSV)
    assert list(read_history(path)["val_neg_elbo"]) == [180.0, 173.2]


def test_bad_params_and_missing_inputs_fail_before_the_model_is_loaded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "pipeline.model.vae", None)  # a tripwire: importing it now raises ImportError
    params = tmp_path / "params.yaml"
    params.write_text("report:\n  grid_size: 1\n")
    assert main(["--params", str(params)]) == 1
    assert "report.grid_size" in capsys.readouterr().err
    params.write_text("report:\n  grid_size: 3\n")
    assert main(["--params", str(params), "--history", str(tmp_path / "absent.csv")]) == 1
    assert "absent.csv" in capsys.readouterr().err


@pytest.mark.integration
@pytest.mark.parametrize("latent_dim", [2, 1])
def test_stage_end_to_end_writes_the_report_and_logs_it_to_the_training_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, latent_dim: int) -> None:
    from mlflow.tracking import MlflowClient

    from pipeline.data.splits import save_split
    from pipeline.model.vae import build_vae
    from pipeline.tracking.run_file import write_run_ref
    from pipeline.tracking.run_lifecycle import training_run

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    x, y = sample_data(60)
    save_split(tmp_path / "prepared", "test", x, y)
    build_vae(latent_dim, 16, seed=0).save(tmp_path / "vae.keras")
    (tmp_path / "metrics.json").write_text(json.dumps(METRICS))
    (tmp_path / "history.csv").write_text(HISTORY_CSV)
    (tmp_path / "params.yaml").write_text(
        f"data:\n  dataset: fashion_mnist\nmodel:\n  latent_dim: {latent_dim}\n"
        "report:\n  grid_size: 5\n  n_samples: 9\n  n_reconstructions: 4\n")
    with training_run("report-test", {"model.latent_dim": 2}, {}) as run:
        pass
    write_run_ref(tmp_path / "run.json", run)

    code = main(["--params", "params.yaml", "--prepared", "prepared", "--model", "vae.keras", "--run", "run.json",
                 "--metrics", "metrics.json", "--history", "history.csv", "--out", "reports"])

    assert code == 0
    expected = sorted([*FIGURE_SIZES, EXPLORER_FILE, HTML_FILE, MODEL_CARD_FILE])  # the card: from run and metrics
    assert sorted(path.name for path in (tmp_path / "reports").iterdir()) == expected
    logged = MlflowClient().list_artifacts(run.run_id)
    assert sorted(artifact.path for artifact in logged) == expected
    assert MlflowClient().get_run(run.run_id).info.status == "FINISHED"
    page = (tmp_path / "reports" / HTML_FILE).read_text(encoding="utf-8")
    assert run.run_id in page and "fashion_mnist" in page
    card = (tmp_path / "reports" / MODEL_CARD_FILE).read_text(encoding="utf-8")
    assert f"MLflow run `{run.run_id}`" in card and "- fashion_mnist" in card


def test_the_explorer_benchmark_times_the_stages_own_render_steps() -> None:
    """A copy of the stage's steps would drift (no labels for a conditional model, the wrong captions)."""
    benchmark = REPO_ROOT / "benchmarks" / "report_explorer.py"
    imported = pipeline_imports(benchmark)
    assert "pipeline.reporting.report_files" in imported
    assert not imported & {"pipeline.reporting.figures", "pipeline.reporting.html_page"}
    source = benchmark.read_text(encoding="utf-8")
    for step in ("render_figures", "render_index", "render_explorer_page", "write_files"):
        assert f"{step}(" in source, step


def test_scatter_histogram_and_explorer_colour_each_class_alike() -> None:
    from matplotlib.colors import to_hex

    from pipeline.reporting.explorer import class_colours

    z, labels, names = np.random.default_rng(0).normal(size=(50, 2)), np.arange(50) % 10, [str(k) for k in range(10)]
    scatter = figures.latent_scatter_figure(z, labels, names, (0, 1), (-3.0, 3.0)).axes[0].collections[0]
    histogram = figures.latent_histogram_figure(z[:, :1], labels, names, (-3.0, 3.0)).axes[0]
    expected = [to_hex(figures.class_colors(10)(k)) for k in range(10)]
    assert [to_hex(scatter.cmap(k)) for k in range(10)] == expected
    assert [to_hex(bars.patches[0].get_facecolor()) for bars in histogram.containers] == expected
    assert class_colours(10) == expected


NOTEBOOK_BACKEND = "module://matplotlib_inline.backend_inline"
"""What a Jupyter or Colab kernel exports; matplotlib_inline is not installed here."""
BACKENDS = [NOTEBOOK_BACKEND, "module://no_such_backend", "TkAgg", "qtagg", "nonsense", ""]


def environment_without_display(**settings: str) -> dict[str, str]:
    import os

    environment = {key: value for key, value in os.environ.items()
                   if key not in {"DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND", "MPLCONFIGDIR", "MATPLOTLIBRC"}}
    return {**environment, "PYTHONPATH": str(REPO_ROOT), **settings}


@pytest.mark.integration  # a Python per backend
@pytest.mark.parametrize("backend", BACKENDS, ids=["notebook", "missing-module", "tkagg", "qtagg", "nonsense",
                                                   "empty"])
def test_report_help_answers_whatever_mplbackend_says(backend: str, tmp_path: Path) -> None:
    """The reported case: a notebook's backend killed the stage at import, ``--help`` included."""
    import subprocess

    done = subprocess.run([sys.executable, "-m", "pipeline", "report", "--help"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=environment_without_display(MPLBACKEND=backend))
    assert done.returncode == 0 and done.stdout.startswith("usage: python -m pipeline report"), done.stderr
    assert done.stderr == ""


HOSTILE_MATPLOTLIBRC = f"backend: {NOTEBOOK_BACKEND}\nfont.size: 30\naxes.facecolor: red\nlines.linewidth: 9\n"


@pytest.mark.integration
def test_report_renders_the_same_pngs_whatever_mplbackend_or_a_matplotlibrc_says(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stage renders headless under a notebook's or a GUI backend without a display, and the user's
    ``matplotlibrc`` (in ``$MPLCONFIGDIR`` or in the working folder) changes no pixel."""
    import subprocess

    from pipeline.data.splits import save_split
    from pipeline.model.vae import build_vae
    from pipeline.tracking.run_file import write_run_ref
    from pipeline.tracking.run_lifecycle import training_run

    x, y = sample_data(60)
    save_split(tmp_path / "prepared", "test", x, y)
    build_vae(2, 16, seed=0).save(tmp_path / "vae.keras")
    (tmp_path / "metrics.json").write_text(json.dumps(METRICS))
    (tmp_path / "history.csv").write_text(HISTORY_CSV)
    (tmp_path / "params.yaml").write_text("report:\n  grid_size: 5\n  n_samples: 9\n  n_reconstructions: 4\n")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "matplotlibrc").write_text(HOSTILE_MATPLOTLIBRC)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with training_run("report-backend-test", {"model.latent_dim": 2}, {}) as run:
        pass
    write_run_ref(tmp_path / "run.json", run)

    def report(out: str, **settings: str) -> dict[str, bytes]:
        command = [sys.executable, "-m", "pipeline", "report", "--params", "params.yaml", "--prepared", "prepared",
                   "--model", "vae.keras", "--run", "run.json", "--metrics", "metrics.json", "--history",
                   "history.csv", "--out", out]
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                              env=environment_without_display(MLFLOW_TRACKING_URI=uri, **settings))
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.startswith("report: ") and done.stdout.count("\n") == 1, done.stdout
        return {name: (tmp_path / out / name).read_bytes() for name in FIGURE_SIZES}

    plain = report("plain")
    assert report("notebook", MPLBACKEND=NOTEBOOK_BACKEND, MPLCONFIGDIR=str(tmp_path / "config")) == plain
    (tmp_path / "matplotlibrc").write_text(HOSTILE_MATPLOTLIBRC)
    assert report("tkagg", MPLBACKEND="TkAgg") == plain
