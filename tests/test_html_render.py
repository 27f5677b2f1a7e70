"""index.html renders in a real browser, alone, with its embedded figures visible."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import chromium_path
from PIL import Image

from pipeline.reporting import figures
from pipeline.reporting.html_page import ReportImage, render_html

pytestmark = pytest.mark.browser  # starts a browser

WINDOW = (1200, 2000)
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
]


def screenshot(page: Path, profile: Path, target: Path) -> np.ndarray:
    """Render ``page`` in headless Chromium and return the screenshot as an RGB array."""
    done = subprocess.run(
        [chromium_path(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={target}",
         f"--window-size={WINDOW[0]},{WINDOW[1]}", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0 and target.is_file(), done.stderr[-2000:]
    with Image.open(target) as picture:
        return np.asarray(picture.convert("RGB"))


def test_report_page_renders_alone_with_its_embedded_figures(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(500) % 10
    scatter = figures.latent_scatter_figure(rng.normal(size=(500, 2)) + labels[:, None] % 3, labels,
                                            [str(k) for k in range(10)], (0, 1), (-3.0, 3.0))
    samples = figures.samples_figure(rng.random((16, 784)), seed=0)
    images = [ReportImage("latent_scatter.png", figures.figure_png(scatter), "z_mean by class"),
              ReportImage("samples.png", figures.figure_png(samples), "samples")]
    page = tmp_path / "site" / "index.html"
    page.parent.mkdir()
    page.write_text(render_html("mnist", "abc123", {"test_neg_elbo": 170.5, "active_units": 2},
                                {"report.grid_size": 30}, images), encoding="utf-8")  # no PNG files beside it

    shot = screenshot(page, tmp_path / "profile", tmp_path / "shot.png")

    assert shot.shape == (WINDOW[1], WINDOW[0], 3)
    assert shot.std() > 20.0, "the page rendered (nearly) blank"
    assert len(np.unique(shot.reshape(-1, 3), axis=0)) > 1000, "too few colours for text and figures"
    saturation = shot.max(axis=2).astype(int) - shot.min(axis=2)
    assert (saturation > 100).mean() > 0.002, "no coloured pixels: the embedded scatter plot did not render"
