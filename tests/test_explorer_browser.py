"""The latent-space explorer in a real browser: the page's JavaScript decoder matches the reference decoder.

Debian's ``chromium``, driven headless by Playwright through its executable path (Playwright's own
browser download is not reachable here). The pointer goes to known latent points through the page's
own transform; the decoded images are read back and compared with the Keras decoder whose weights the
page embeds (float32, so float16 storage is under test too) and with numpy on the stored float16 weights
(so the JavaScript forward pass is checked to float32 precision).
"""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from helpers import chromium_path

from pipeline.reporting.explorer import DecoderWeights, render_explorer

Decode = Callable[[np.ndarray], np.ndarray]

pytestmark = pytest.mark.browser

TOLERANCE = 2e-3  # max abs difference of pixel means, float16 weights against float32
CLASS_NAMES = [f"class {k}" for k in range(10)]
GRID_RANGE = (-3.0, 3.0)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


def random_decoder(n_inputs: int, seed: int, n_hidden: int = 256, n_pixels: int = 784) -> DecoderWeights:
    """Float32 weights with the spread of the default run's trained decoder (kernel std 0.30 and 0.15).

    Over latent points in [-6, 6]², half the pixels come out between 0.1 and 0.9 and float16 storage moves
    them by up to ~1.1e-3, as it moves the trained decoder's by up to 1.0e-3.
    """
    rng = np.random.default_rng(seed)
    return DecoderWeights(
        rng.normal(0.0, 0.3, (n_inputs, n_hidden)).astype(np.float32),
        rng.normal(0.3, 0.3, n_hidden).astype(np.float32),
        rng.normal(0.0, 0.15, (n_hidden, n_pixels)).astype(np.float32),
        rng.normal(-1.0, 0.5, n_pixels).astype(np.float32),
    )


def keras_decoder(latent_dim: int, seed: int) -> tuple[DecoderWeights, Decode]:
    """A Keras VAE of the pipeline's architecture with ``random_decoder`` weights: what the page embeds, the
    weights as the loading helper gives them to the report, and the Keras decoder's batched predict."""
    from pipeline.model.trained_vae import TrainedVae
    from pipeline.model.vae import build_vae

    vae = TrainedVae(build_vae(latent_dim, 256, seed=0))
    chosen = random_decoder(latent_dim, seed)
    vae.decoder.set_weights(list(chosen.arrays()))
    weights = DecoderWeights(*vae.decoder_dense_weights())
    for given, taken in zip(chosen.arrays(), weights.arrays(), strict=True):
        np.testing.assert_array_equal(given, taken)
    return weights, lambda z: vae.decode(np.asarray(z, dtype=np.float32)[None, :])[0]


def reference_decode(weights: DecoderWeights, inputs: np.ndarray) -> np.ndarray:
    """Dense, relu, Dense, sigmoid in float64 numpy: what Keras' decoder computes, (n, n_in) → (n, pixels)."""
    hidden = np.maximum(inputs @ weights.hidden_kernel.astype(np.float64) + weights.hidden_bias, 0.0)
    return 1.0 / (1.0 + np.exp(-(hidden @ weights.output_kernel.astype(np.float64) + weights.output_bias)))


def clustered_codes(latent_dim: int, seed: int, count: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASS_NAMES), count)
    centres = rng.normal(0.0, 2.5, (len(CLASS_NAMES), latent_dim))
    return (centres[labels] + rng.normal(0.0, 0.4, (count, latent_dim))).astype(np.float32), labels


@dataclass
class Explorer:
    """One open explorer page and every request and error it produced."""

    page: object
    url: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def point_to(self, *latent: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Move the pointer onto the plotted latent point; return the page's z, decoded floats and canvas shades."""
        x, y = self.page.evaluate("(a) => explorer.toCanvas(...a)", list(latent))
        box = self.page.locator("#latent").bounding_box()
        self.page.mouse.move(box["x"] + x, box["y"] + y)
        return self.read("#decoded")

    def click(self, *latent: float) -> np.ndarray:
        x, y = self.page.evaluate("(a) => explorer.toCanvas(...a)", list(latent))
        box = self.page.locator("#latent").bounding_box()
        self.page.mouse.click(box["x"] + x, box["y"] + y)
        return self.read("#decoded")[0]

    def read(self, selector: str, index: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``data-z``, the decoded Float32Array and the canvas' grey levels in [0, 1] (ink = 1)."""
        element = self.page.locator(selector).nth(index)
        z = np.array(json.loads(element.get_attribute("data-z")))
        decoded = np.array(element.evaluate("(c) => Array.from(c.decoded)"))
        rgba = np.array(element.evaluate(
            "(c) => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)"))
        return z, decoded, 1.0 - rgba[0::4] / 255.0

    def pixels_per_unit(self) -> float:
        (x0, _), (x1, _) = (self.page.evaluate("(a) => explorer.toCanvas(a)", a) for a in (0.0, 1.0))
        return abs(x1 - x0)


@pytest.fixture
def open_explorer(browser: object, tmp_path: Path) -> Iterator[object]:
    """Render a page to a file, open it via file://; afterwards assert it requested nothing and logged no error."""
    opened: list[Explorer] = []

    def open_page(html: str, name: str = "explorer.html") -> Explorer:
        target = tmp_path / name
        target.write_text(html, encoding="utf-8")
        page = browser.new_page(viewport={"width": 1100, "height": 1000})
        explorer = Explorer(page, target.as_uri())
        page.on("request", lambda request: explorer.requests.append(request.url))
        page.on("pageerror", lambda error: explorer.errors.append(str(error)))
        page.on("console", lambda message: explorer.errors.append(message.text) if message.type == "error" else None)
        page.goto(explorer.url)
        page.wait_for_selector("body[data-ready=true]")
        opened.append(explorer)
        return explorer

    yield open_page
    for explorer in opened:
        resources = explorer.page.evaluate("performance.getEntriesByType('resource').map((e) => e.name)")
        explorer.page.close()
        assert explorer.errors == []
        assert set(explorer.requests) <= {explorer.url}, f"the page requested {explorer.requests}"
        assert resources == [], f"the page loaded {resources}"


def assert_matches_decoder(weights: DecoderWeights, z: np.ndarray, decoded: np.ndarray, shades: np.ndarray,
                           condition: np.ndarray | None = None, decode: Decode | None = None) -> None:
    """The page's image at ``z`` is the decoder's (``decode``: Keras; else numpy in float64) within TOLERANCE."""
    inputs = (z if condition is None else np.concatenate([z, condition]))[None, :]
    expected = decode(z) if decode else reference_decode(weights, inputs)[0]
    assert np.abs(decoded - expected).max() <= TOLERANCE
    as_stored = DecoderWeights(*(array.astype(np.float16) for array in weights.arrays()))
    assert np.abs(decoded - reference_decode(as_stored, inputs)[0]).max() <= 1e-6  # exact but for float32 output
    assert np.abs(shades - expected).max() <= 0.5 / 255 + TOLERANCE  # what is drawn is what was decoded


def test_pointer_shows_the_decoders_image_at_the_latent_point_under_it(open_explorer: object) -> None:
    weights, decode = keras_decoder(2, seed=1)
    z_mean, labels = clustered_codes(2, seed=2)
    explorer = open_explorer(render_explorer(weights, z_mean, labels, CLASS_NAMES, (0, 1), GRID_RANGE, title="t"))
    pixel = 1.0 / explorer.pixels_per_unit()
    seen = []
    for target in [(0.0, 0.0), (1.5, -2.0), (-2.7, 2.2), (4.2, 3.9), (-0.4, -5.0)]:
        z, decoded, shades = explorer.point_to(*target)
        assert np.abs(z - target).max() <= pixel, "the pointer landed elsewhere than the page's own transform said"
        assert_matches_decoder(weights, z, decoded, shades, decode=decode)
        seen.append(decoded)
    assert min(np.abs(a - b).max() for a, b in zip(seen, seen[1:], strict=False)) > 0.05, "the image did not follow"


def test_two_clicks_decode_the_straight_line_between_them(open_explorer: object) -> None:
    weights, decode = keras_decoder(2, seed=3)
    z_mean, labels = clustered_codes(2, seed=4)
    explorer = open_explorer(render_explorer(weights, z_mean, labels, CLASS_NAMES, (0, 1), GRID_RANGE, title="t"))
    start, end = explorer.click(-2.0, 1.0), explorer.click(2.5, -1.5)
    strip = explorer.page.locator("#strip canvas")
    assert strip.count() == 10
    for k in range(10):
        z, decoded, shades = explorer.read("#strip canvas", k)
        np.testing.assert_allclose(z, start + k / 9 * (end - start), rtol=0, atol=1e-12)
        assert_matches_decoder(weights, z, decoded, shades, decode=decode)
    explorer.click(0.0, 0.0)  # a third click starts a new line
    assert strip.count() == 0


def test_more_than_two_dimensions_plot_grid_dims_and_hold_the_others_at_zero(open_explorer: object) -> None:
    weights, decode = keras_decoder(4, seed=5)
    z_mean, labels = clustered_codes(4, seed=6)
    explorer = open_explorer(render_explorer(weights, z_mean, labels, CLASS_NAMES, (2, 0), GRID_RANGE, title="t"))
    assert "z₃ and z₁" in explorer.page.inner_text("body")
    z, decoded, shades = explorer.point_to(1.2, -0.7)
    pixel = 1.0 / explorer.pixels_per_unit()
    assert z[1] == z[3] == 0.0
    assert abs(z[2] - 1.2) <= pixel and abs(z[0] + 0.7) <= pixel
    assert_matches_decoder(weights, z, decoded, shades, decode=decode)


def test_one_dimension_is_a_strip_along_z1(open_explorer: object) -> None:
    weights, decode = keras_decoder(1, seed=7)
    z_mean, labels = clustered_codes(1, seed=8)
    explorer = open_explorer(render_explorer(weights, z_mean, labels, CLASS_NAMES, (0, 1), GRID_RANGE, title="t"))
    z, decoded, shades = explorer.point_to(1.3)
    assert z.shape == (1,) and abs(z[0] - 1.3) <= 1.0 / explorer.pixels_per_unit()
    assert_matches_decoder(weights, z, decoded, shades, decode=decode)


def test_a_conditional_decoder_gets_the_class_picked_on_the_page(open_explorer: object) -> None:
    """Ready for the conditional VAE (issue 15): decoder input z then one-hot class, checked against numpy."""
    weights = random_decoder(2 + len(CLASS_NAMES), seed=9)
    z_mean, labels = clustered_codes(2, seed=10)
    explorer = open_explorer(render_explorer(weights, z_mean, labels, CLASS_NAMES, (0, 1), GRID_RANGE,
                                             title="t", conditional=True))
    explorer.page.select_option("#label", "7")
    z, decoded, shades = explorer.point_to(0.5, 1.0)
    assert_matches_decoder(weights, z, decoded, shades, condition=np.eye(len(CLASS_NAMES))[7])
    explorer.page.select_option("#label", "2")  # the image follows the picker without moving the pointer
    z, decoded, shades = explorer.read("#decoded")
    assert_matches_decoder(weights, z, decoded, shades, condition=np.eye(len(CLASS_NAMES))[2])


def test_the_request_check_catches_a_page_that_loads_something(browser: object, tmp_path: Path) -> None:
    weights = random_decoder(2, seed=11)
    z_mean, labels = clustered_codes(2, seed=12, count=100)
    html = render_explorer(weights, z_mean, labels, CLASS_NAMES, (0, 1), GRID_RANGE, title="t")
    target = tmp_path / "leaky.html"
    target.write_text(html.replace("</body>", '<img src="http://127.0.0.1:9/pixel.png"></body>'), encoding="utf-8")
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(target.as_uri())
    page.close()
    assert "http://127.0.0.1:9/pixel.png" in requests
