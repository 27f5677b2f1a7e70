"""The latent-space explorer: one self-contained HTML page that runs the decoder in the browser.

The page embeds the decoder's two Dense layers (float16, base64) and a sample of the test set's
``z_mean``; its plain JavaScript does the forward pass (dense, relu, dense, sigmoid) for the latent
point under the pointer and for the straight line between two clicked points. It loads nothing:
no server, library, font or network.
"""

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np
from matplotlib.colors import to_hex

from pipeline.reporting.figures import class_colors

TEMPLATES = Path(__file__).parent / "templates"
MAX_POINTS = 5000  # 500 per MNIST class: the clusters' shapes, in ~35 KB of the page
STRIP_LENGTH = 10  # decoded images from the first clicked point to the second, both ends included
VIEW_MARGIN = 0.04  # share of each axis' span left empty around the points and the grid square
FLOAT16_MAX = float(np.finfo(np.float16).max)
SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


@dataclass(frozen=True)
class DecoderWeights:
    """The decoder's two Dense layers: input (n_in,) → relu hidden (n_hidden,) → pixel logits (n_pixels,).

    ``hidden_kernel`` (n_in, n_hidden), ``hidden_bias`` (n_hidden,), ``output_kernel`` (n_hidden, n_pixels),
    ``output_bias`` (n_pixels,), as Keras stores Dense weights (y = x · kernel + bias). ``n_in`` is latent_dim,
    or latent_dim + the number of classes for a decoder that also takes a one-hot label, p(x | z, y).
    Raises ``ValueError`` when the shapes do not chain.
    """

    hidden_kernel: np.ndarray
    hidden_bias: np.ndarray
    output_kernel: np.ndarray
    output_bias: np.ndarray

    def __post_init__(self) -> None:
        n_in, n_hidden = np.shape(self.hidden_kernel) if np.ndim(self.hidden_kernel) == 2 else (0, 0)
        n_pixels = np.shape(self.output_kernel)[-1] if np.ndim(self.output_kernel) == 2 else 0
        expected = {"hidden_kernel": (n_in, n_hidden), "hidden_bias": (n_hidden,),
                    "output_kernel": (n_hidden, n_pixels), "output_bias": (n_pixels,)}
        for name, shape in expected.items():
            if np.shape(getattr(self, name)) != shape or 0 in shape:
                raise ValueError(f"decoder {name} has shape {np.shape(getattr(self, name))}, expected {shape} "
                                 "(input → hidden kernel and bias → output kernel and bias must chain)")

    @property
    def n_inputs(self) -> int:
        return int(self.hidden_kernel.shape[0])

    @property
    def n_pixels(self) -> int:
        return int(self.output_kernel.shape[1])

    def count(self) -> int:
        """How many numbers the page embeds for the decoder."""
        return sum(int(np.size(array)) for array in self.arrays())

    def arrays(self) -> tuple[np.ndarray, ...]:
        return self.hidden_kernel, self.hidden_bias, self.output_kernel, self.output_bias


def pack_float16(array: np.ndarray) -> str:
    """``array`` (any shape, row-major) as base64 of little-endian IEEE float16.

    Rounding to float16 moves each value by at most 2⁻¹¹ of itself. Raises ``ValueError`` for values
    that float16 cannot hold (beyond ±65504, or not finite).
    """
    values = np.asarray(array, dtype=np.float64)
    if not np.isfinite(values).all() or np.abs(values).max(initial=0.0) > FLOAT16_MAX:
        raise ValueError(f"values beyond float16's range ±{FLOAT16_MAX:g} cannot be embedded "
                         f"(largest magnitude {np.abs(values).max(initial=0.0):g})")
    return base64.b64encode(values.astype("<f2").tobytes()).decode("ascii")


def sample_points(z_mean: np.ndarray, labels: np.ndarray, max_points: int, seed: int) -> np.ndarray:
    """Row indices of at most ``max_points`` points, drawn without replacement in a random order.

    The random order also means that no class is drawn entirely on top of the others.
    """
    if len(z_mean) != len(labels):
        raise ValueError(f"{len(z_mean)} z_mean rows but {len(labels)} labels")
    rng = np.random.default_rng(seed)
    return rng.permutation(len(z_mean))[:max_points]


def view_box(points: np.ndarray, grid_range: Sequence[float]) -> list[list[float]]:
    """Per plotted axis, ``[low, high]`` covering every point and the manifold's grid, with a margin."""
    low = np.minimum(points.min(axis=0, initial=np.inf), grid_range[0])
    high = np.maximum(points.max(axis=0, initial=-np.inf), grid_range[1])
    margin = VIEW_MARGIN * (high - low)
    return [[float(a), float(b)] for a, b in zip(low - margin, high + margin, strict=True)]


def axis_name(dim: int) -> str:
    """``z₁`` for dimension 0: the names the static figures use."""
    return "z" + str(dim + 1).translate(SUBSCRIPTS)


def grouped(number: int) -> str:
    """``202256`` as ``202 256``, with thin spaces, as the README writes numbers."""
    return f"{number:,}".replace(",", "\u2009")


def class_colours(count: int) -> list[str]:
    """One colour per class, those of the static latent scatter."""
    cmap = class_colors(count)
    return [to_hex(cmap(k)) for k in range(count)]


def _check_inputs(weights: DecoderWeights, z_mean: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                  grid_dims: Sequence[int], conditional: bool) -> int:
    """The latent size, once the arrays, dims and classes agree; ``ValueError`` naming what does not."""
    if np.ndim(z_mean) != 2:
        raise ValueError(f"z_mean must be (n, latent_dim), got shape {np.shape(z_mean)}")
    latent_dim = z_mean.shape[1]
    expected = latent_dim + (len(class_names) if conditional else 0)
    if weights.n_inputs != expected:
        raise ValueError(f"the decoder takes {weights.n_inputs} inputs, but z_mean has {latent_dim} dimensions"
                         + (f" and there are {len(class_names)} classes" if conditional else ""))
    if math.isqrt(weights.n_pixels) ** 2 != weights.n_pixels:
        raise ValueError(f"{weights.n_pixels} output pixels do not make a square image")
    dims = plotted_dims(latent_dim, grid_dims)
    if len(set(dims)) != min(latent_dim, 2) or not all(0 <= dim < latent_dim for dim in dims):
        raise ValueError(f"grid_dims {list(grid_dims)} do not name distinct dimensions of the "
                         f"{latent_dim}-dimensional latent space")
    if len(labels) and (np.min(labels) < 0 or np.max(labels) >= len(class_names)):
        raise ValueError(f"labels must lie in [0, {len(class_names)}) to name one of the classes")
    return latent_dim


def plotted_dims(latent_dim: int, grid_dims: Sequence[int]) -> list[int]:
    """The latent dimensions on the plot's axes: ``grid_dims``, or the only one of a 1-dimensional space."""
    return [0] if latent_dim == 1 else list(grid_dims)


def explanation(latent_dim: int, dims: Sequence[int], conditional: bool) -> str:
    """The sentence above the plot saying what is drawn and what the decoder is given."""
    if latent_dim == 1:
        text = "The latent space has one dimension, z₁: a strip, whose vertical spread is random, for visibility."
    elif latent_dim == 2:
        text = "Each dot is a test image's z_mean, coloured by its class."
    else:
        text = (f"The plot shows {axis_name(dims[0])} and {axis_name(dims[1])} (report.grid_dims) of the "
                f"{latent_dim} latent dimensions: each dot is a test image's z_mean on these two; the decoder "
                "gets the point under the pointer with every other dimension held at 0.")
    if conditional:
        text += " The decoder also gets the class chosen in the picker, one-hot."
    return text + (" Move the pointer over the plot to decode the latent point under it; click two points "
                   "to decode the straight line between them. The dashed square is the manifold figure's grid.")


def render_explorer(weights: DecoderWeights, z_mean: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                    grid_dims: Sequence[int], grid_range: Sequence[float], *, title: str,
                    conditional: bool = False, max_points: int = MAX_POINTS, seed: int = 0) -> str:
    """The whole explorer page as a string.

    ``z_mean`` (n, latent_dim) and ``labels`` (n,) of the test set, of which at most ``max_points`` rows
    (random, by ``seed``) are drawn; ``grid_dims``: the two plotted latent dimensions (one when latent_dim
    is 1); ``grid_range``: the manifold grid's [low, high], marked and always in view. With ``conditional``,
    the decoder input is z followed by the one-hot class picked on the page. Raises ``ValueError`` on
    inputs that do not fit together.
    """
    labels = np.asarray(labels)
    latent_dim = _check_inputs(weights, z_mean, labels, class_names, grid_dims, conditional)
    dims = plotted_dims(latent_dim, grid_dims)
    rows = sample_points(z_mean, labels, max_points, seed)
    plotted = np.asarray(z_mean, dtype=np.float64)[rows][:, dims]
    if latent_dim == 1:  # a strip: the second coordinate is jitter in [-1, 1]
        plotted = np.column_stack([plotted, np.random.default_rng(seed).uniform(-1.0, 1.0, len(rows))])
    box = view_box(plotted[:, : len(dims)], grid_range)
    colours = class_colours(len(class_names))
    data = {
        "latentDim": latent_dim, "dims": dims, "conditional": conditional, "classNames": list(class_names),
        "colours": colours, "view": box + ([[-1.1, 1.1]] if latent_dim == 1 else []),
        "gridRange": [float(grid_range[0]), float(grid_range[1])], "axisNames": [axis_name(d) for d in dims],
        "side": math.isqrt(weights.n_pixels), "inputs": weights.n_inputs, "hidden": int(weights.hidden_bias.size),
        "pixels": weights.n_pixels, "stripLength": STRIP_LENGTH, "count": len(rows),
        "weights": [pack_float16(array) for array in weights.arrays()],
        "points": pack_float16(plotted), "labels": base64.b64encode(labels[rows].astype(np.uint8)).decode("ascii"),
    }
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                     undefined=jinja2.StrictUndefined)
    return environment.get_template("explorer.html.j2").render(
        title=title, data=data, explanation=explanation(latent_dim, dims, conditional),
        classes=list(zip(class_names, colours, strict=True)), conditional=conditional,
        script=(TEMPLATES / "explorer.js").read_text(encoding="utf-8"),
        shown=grouped(len(rows)), total=grouped(len(z_mean)), seed=seed, weight_count=grouped(weights.count()),
        layers=f"{weights.n_inputs} → {weights.hidden_bias.size} → {weights.n_pixels}",
    )
