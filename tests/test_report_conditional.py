"""The conditional VAE's report: per-class manifolds, the same style under every label, samples per label."""

import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_figures
from PIL import Image
from test_report import METRICS, sample_data, small_params, tile

from pipeline.reporting import conditional_figures, figures
from pipeline.reporting.captions import CONDITIONAL_CAPTIONS
from pipeline.reporting.figure_sets import draw_figures
from pipeline.reporting.report_files import EXPLORER_FILE, HTML_FILE, write_report

CLASSES = 10
FIGURE_SIZES = {
    "manifold.png": conditional_figures.CLASS_MANIFOLDS_SIZE,
    "latent_scatter.png": figures.SCATTER_SIZE,
    "reconstructions.png": conditional_figures.STYLES_SIZE,
    "samples.png": conditional_figures.CLASS_SAMPLES_SIZE,
    "learning_curves.png": figures.CURVES_SIZE,
}
HISTORY = {"epoch": [1, 2], "loss": [190.0, 165.0], "neg_elbo": [210.0, 175.5], "kl_loss": [25.0, 12.5]}


@dataclass
class SpellingCodec:
    """A numpy stand-in for a conditional VAE whose 2×2 decoded image spells out its input:
    top row z₁ and z₂, bottom row the label twice. ``calls`` records each decode batch."""

    calls: list

    @property
    def latent_dim(self) -> int:
        return 2

    @property
    def num_classes(self) -> int:
        return CLASSES

    def encode_mean(self, images: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        assert labels is not None and len(labels) == len(images), "a conditional encoder is given the labels"
        return np.stack([images[:, 0], labels.astype(np.float64)], axis=1)

    def decode(self, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        assert labels is not None and len(labels) == len(z)
        self.calls.append(len(z))
        return np.column_stack([z[:, 0], z[:, 1], labels, labels]).astype(np.float64)

    def decoder_dense_weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Dense layers of the shapes a conditional decoder has: (2 + classes) → 8 → 784."""
        rng = np.random.default_rng(0)
        return rng.normal(size=(2 + CLASSES, 8)), np.zeros(8), rng.normal(size=(8, 784)), np.zeros(784)


def spelled(z1: float, z2: float, label: int) -> np.ndarray:
    return np.array([[z1, z2], [label, label]])


def test_class_manifolds_decode_one_grid_under_every_label_in_one_call() -> None:
    codec = SpellingCodec([])
    boards, z_values = conditional_figures.class_manifold_grids(codec.decode, CLASSES, 3, (-1.0, 1.0), 2, (0, 1))
    assert codec.calls == [CLASSES * 9]
    assert boards.shape == (CLASSES, 6, 6)
    for label in range(CLASSES):
        np.testing.assert_allclose(tile(boards[label], 0, 0, 2), spelled(-1, 1, label))  # top left: low z₁, high z₂
        np.testing.assert_allclose(tile(boards[label], 2, 1, 2), spelled(0, -1, label))
    np.testing.assert_allclose(z_values, [-1, 0, 1])


def small_images(count: int) -> tuple[np.ndarray, np.ndarray]:
    """2×2-pixel images, the size the spelling codec decodes, and labels 0, 1, … 9, 0, …"""
    x, y = sample_data(count)
    return x[:, :4], y


def test_same_style_figure_decodes_each_z_mean_under_each_label_below_its_image() -> None:
    codec = SpellingCodec([])
    x, y = small_images(30)
    z_mean = codec.encode_mean(x, y)
    drawn = draw_figures(small_params().report, codec, x, z_mean, y, [str(k) for k in range(CLASSES)], HISTORY)
    board = drawn["reconstructions.png"].axes[0].images[0].get_array()
    assert board.shape == ((CLASSES + 1) * 2, 5 * 2)  # n_reconstructions 5 images, a row per label below them
    for column in (0, 4):
        np.testing.assert_allclose(tile(board, 0, column, 2), x[column].reshape(2, 2), rtol=1e-6)
        for label in (0, 7):
            np.testing.assert_allclose(tile(board, label + 1, column, 2), spelled(*z_mean[column], label))
    labels = [text.get_text() for text in drawn["reconstructions.png"].axes[0].get_yticklabels()]
    assert labels == ["test image", *(f"label {k}" for k in range(CLASSES))]


def test_samples_share_each_prior_draw_across_the_labels_and_scatter_is_conditional_z_mean() -> None:
    codec = SpellingCodec([])
    x, y = small_images(40)
    drawn = draw_figures(small_params().report, codec, x, codec.encode_mean(x, y), y,
                         [str(k) for k in range(CLASSES)], HISTORY)
    board = drawn["samples.png"].axes[0].images[0].get_array()
    assert board.shape == (CLASSES * 2, 1 * 2)  # n_samples 10 over 10 labels: one prior draw, a row per label
    assert np.all(board[0::2, 0] == board[0, 0]), "every label decodes the same latent point"
    np.testing.assert_allclose(board[1::2, 0], np.arange(CLASSES))
    scatter = drawn["latent_scatter.png"].axes[0].collections[0].get_offsets()
    np.testing.assert_allclose(np.sort(scatter[:, 1]), np.sort(y.astype(float)))


def test_conditional_report_writes_the_same_files_at_fixed_sizes_with_their_captions(tmp_path: Path) -> None:
    class PixelCodec(SpellingCodec):
        def decode(self, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
            spelled = super().decode(z, labels)
            return 1 / (1 + np.exp(-np.tile(spelled, 196) * np.linspace(-1, 1, 784)))

    x, y = sample_data()
    written = write_report(small_params(), PixelCodec([]), x, y, HISTORY, METRICS, "run-1", tmp_path)
    assert sorted(path.name for path in written) == sorted([*FIGURE_SIZES, EXPLORER_FILE, HTML_FILE])
    assert_figures(tmp_path, FIGURE_SIZES)
    page = (tmp_path / HTML_FILE).read_text(encoding="utf-8")
    assert "<title>Conditional VAE report: mnist</title>" in page
    assert "the conditional VAE, given each test image's label (one of 10 classes);" in page
    assert "estimates −log p(x|y), in nats per test image" in page
    for name in FIGURE_SIZES:
        assert html.escape(CONDITIONAL_CAPTIONS[name]) in page
    assert "Same style, every class" in page
    explorer = (tmp_path / EXPLORER_FILE).read_text(encoding="utf-8")
    data = json.loads(explorer.split("const EXPLORER_DATA = ", 1)[1].split(";</script>", 1)[0])
    assert data["conditional"] is True and data["inputs"] == 2 + CLASSES, "the explorer offers its class picker"


@pytest.mark.integration
def test_a_trained_conditional_vae_draws_every_figure(tmp_path: Path) -> None:
    from pipeline.model.trained_vae import TrainedVae
    from pipeline.model.vae import build_vae

    x, y = sample_data(60)
    trained = TrainedVae(build_vae(2, 16, seed=0, num_classes=CLASSES))
    written = write_report(small_params(), trained, x, y, HISTORY, METRICS, "run-2", tmp_path)
    with Image.open(tmp_path / "manifold.png") as picture:
        assert picture.size == tuple(round(side * figures.DPI) for side in conditional_figures.CLASS_MANIFOLDS_SIZE)
    assert len(written) == len(FIGURE_SIZES) + 2
