"""The report's figures: pure functions from arrays to matplotlib ``Figure`` objects.

No pyplot: every figure is a ``Figure`` on its own Agg canvas, so nothing leaks into global
state and no display is needed. Sizes and resolution are constants, so the PNGs always have
the same pixel size (``figsize × DPI``).
"""

import io
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, Colormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from pipeline.core.param_sections import ReportParams

DPI = 100
MANIFOLD_SIZE = (9.5, 9.5)
STRIP_SIZE = (12.0, 2.4)  # the manifold of a 1-D latent space: one row of tiles
SCATTER_SIZE = (9.0, 7.5)
RECONSTRUCTIONS_SIZE = (12.0, 3.0)
SAMPLES_SIZE = (8.0, 8.5)
CURVES_SIZE = (12.0, 4.5)
IMAGE_CMAP = "gray_r"  # ink dark on white paper: prints well
CLASS_CMAP = "tab10"
MAX_TICKS = 7  # odd, so an odd grid gets a tick at its centre tile
SCATTER_SHUFFLE_SEED = 0
HISTOGRAM_BINS = 60

DecodeFn = Callable[[np.ndarray], np.ndarray]


def manifold_range(settings: ReportParams, z_mean: np.ndarray) -> tuple[float, float]:
    """The z range the manifold spans: ``grid_range`` when fixed, else the smallest square box holding the
    ``range_percentiles`` of the test codes in each plotted dimension (z₁ alone for a 1-D latent space), so the
    digits the encoder uses all show and the tiles keep their aspect."""
    if settings.manifold_range == "fixed" or not len(z_mean):
        return settings.grid_range
    dims = [0] if z_mean.shape[1] == 1 else list(settings.grid_dims)
    low, high = np.percentile(np.asarray(z_mean, np.float64)[:, dims], settings.range_percentiles, axis=0)
    return (float(np.min(low)), float(np.max(high))) if np.max(high) > np.min(low) else settings.grid_range


def image_side(pixels: int) -> int:
    """The side of the square image stored as ``pixels`` values (784 → 28)."""
    side = math.isqrt(pixels)
    if side * side != pixels:
        raise ValueError(f"{pixels} pixels do not make a square image")
    return side


def tile_grid(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Lay ``n`` flat square images out row by row on a ``rows × cols`` board; empty cells stay 0."""
    n, pixels = images.shape
    if n > rows * cols:
        raise ValueError(f"{n} images do not fit a {rows}×{cols} grid")
    side = image_side(pixels)
    board = np.zeros((rows * cols, side, side), dtype=np.float32)
    board[:n] = images.reshape(n, side, side)
    return board.reshape(rows, cols, side, side).transpose(0, 2, 1, 3).reshape(rows * side, cols * side)


def manifold_points(grid_size: int, grid_range: Sequence[float], latent_dim: int,
                    dims: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The latent points of the grid in row-major board order, and the z values along each axis.

    Columns go left to right with growing ``z[dims[0]]``; rows go top to bottom with falling
    ``z[dims[1]]`` (the usual plot orientation); every other dimension is 0.
    """
    z_values = np.linspace(grid_range[0], grid_range[1], grid_size)
    z_across, z_up = np.meshgrid(z_values, z_values[::-1])
    points = np.zeros((grid_size * grid_size, latent_dim), dtype=np.float32)
    points[:, dims[0]] = z_across.ravel()
    points[:, dims[1]] = z_up.ravel()
    return points, z_values


def manifold_grid(decode_fn: DecodeFn, grid_size: int, grid_range: Sequence[float], latent_dim: int,
                  dims: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Decode the whole grid in one call and assemble the tiles: ``(image, z values)``."""
    points, z_values = manifold_points(grid_size, grid_range, latent_dim, dims)
    decoded = np.asarray(decode_fn(points))
    return tile_grid(decoded, grid_size, grid_size), z_values


def manifold_strip(decode_fn: DecodeFn, grid_size: int, grid_range: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The manifold of a 1-D latent space: ``grid_size`` points along z₁ over ``grid_range``, decoded in one
    call and laid out left to right with growing z₁: ``(image of one row of tiles, z values)``."""
    z_values = np.linspace(grid_range[0], grid_range[1], grid_size)
    decoded = np.asarray(decode_fn(z_values.astype(np.float32)[:, None]))
    return tile_grid(decoded, 1, grid_size), z_values


def class_colors(n: int) -> Colormap:
    """The colour map of ``n`` classes that every figure and the explorer share: class ``k`` is ``cmap(k)``."""
    return colormaps[CLASS_CMAP].resampled(n)


def new_figure(size: tuple[float, float]) -> Figure:
    """An empty figure of ``size`` inches on its own Agg canvas, laid out by constrained layout."""
    figure = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def tick_tiles(grid_size: int) -> np.ndarray:
    """A handful of tile indices to label, symmetric about the centre and always both ends."""
    count = min(grid_size, MAX_TICKS if grid_size % 2 else MAX_TICKS - 1)
    lower = np.floor(np.linspace(0, grid_size - 1, count)[: (count + 1) // 2] + 0.5).astype(int)
    return np.unique(np.concatenate([lower, grid_size - 1 - lower]))


def axis_label(dim: int) -> str:
    """The axis name of latent dimension ``dim`` counted from 0, as z₁, z₂, … in mathtext."""
    return f"$z_{{{dim + 1}}}$"


def manifold_figure(image: np.ndarray, z_values: np.ndarray, latent_dim: int, dims: Sequence[int]) -> Figure:
    """The decoded grid with z values ticked at tile centres; z grows rightwards and upwards."""
    grid_size = len(z_values)
    side = image.shape[0] // grid_size
    figure = new_figure(MANIFOLD_SIZE)
    axes = figure.add_subplot()
    axes.imshow(image, cmap=IMAGE_CMAP, vmin=0.0, vmax=1.0, interpolation="antialiased")
    ticks = tick_tiles(grid_size)
    centres = side * ticks + (side - 1) / 2
    axes.set_xticks(centres, [f"{z_values[k]:.2f}" for k in ticks])
    axes.set_yticks(centres, [f"{z_values[::-1][k]:.2f}" for k in ticks])
    axes.set_xlabel(axis_label(dims[0]))
    axes.set_ylabel(axis_label(dims[1]))
    others = ", other dimensions at 0" if latent_dim > 2 else ""
    axes.set_title(f"Decoded {grid_size}×{grid_size} grid of latent points "
                   f"({axis_label(dims[0])}, {axis_label(dims[1])}){others}")
    return figure


def manifold_strip_figure(image: np.ndarray, z_values: np.ndarray) -> Figure:
    """The decoded strip of a 1-D latent space with z₁ ticked at tile centres, growing rightwards."""
    grid_size = len(z_values)
    side = image.shape[0]
    figure = new_figure(STRIP_SIZE)
    axes = figure.add_subplot()
    axes.imshow(image, cmap=IMAGE_CMAP, vmin=0.0, vmax=1.0, interpolation="antialiased")
    ticks = tick_tiles(grid_size)
    axes.set_xticks(side * ticks + (side - 1) / 2, [f"{z_values[k]:.2f}" for k in ticks])
    axes.set_yticks([])
    axes.set_xlabel(axis_label(0))
    axes.set_title(f"Decoded {grid_size} latent points along {axis_label(0)}, the only latent dimension")
    return figure


def latent_histogram_figure(z: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                            grid_range: Sequence[float]) -> Figure:
    """Test-set ``z_mean`` of a 1-D latent space as a histogram stacked by class.

    Dashed lines mark ``grid_range``, the stretch of z₁ the manifold strip decodes.
    """
    figure = new_figure(SCATTER_SIZE)
    axes = figure.add_subplot()
    n_classes = len(class_names)
    cmap = class_colors(n_classes)
    values = np.asarray(z, dtype=np.float64)[:, 0]
    edges = np.histogram_bin_edges(values, bins=HISTOGRAM_BINS)
    axes.hist([values[labels == k] for k in range(n_classes)], bins=edges.tolist(), stacked=True,
              color=[cmap(k) for k in range(n_classes)], label=list(class_names))
    for index, bound in enumerate(grid_range):
        axes.axvline(bound, linestyle="--", linewidth=1.0, color="black",
                     label="manifold range" if index == 0 else None)
    axes.legend(title="class", loc="upper right", fontsize="small")
    axes.set_xlabel(axis_label(0))
    axes.set_ylabel("test images")
    axes.set_title(f"Encoder means z_mean of {len(labels)} test images, stacked by class")
    axes.grid(True, linewidth=0.3, alpha=0.5)
    return figure


def latent_scatter_figure(z: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                          dims: Sequence[int], grid_range: Sequence[float]) -> Figure:
    """Test-set ``z_mean`` on two latent axes, one colour per class, equal axis scale.

    A dashed square marks ``grid_range``, the part of the plane the manifold figure decodes.
    """
    figure = new_figure(SCATTER_SIZE)
    axes = figure.add_subplot()
    order = np.random.default_rng(SCATTER_SHUFFLE_SEED).permutation(len(labels))  # no class hides the rest
    n_classes = len(class_names)
    cmap = class_colors(n_classes)
    norm = BoundaryNorm(np.arange(n_classes + 1) - 0.5, n_classes)
    points = axes.scatter(z[order, dims[0]], z[order, dims[1]], c=labels[order], cmap=cmap, norm=norm,
                          s=3, alpha=0.6, linewidths=0)
    colourbar = figure.colorbar(points, ax=axes, ticks=np.arange(n_classes), shrink=0.8)
    colourbar.ax.set_yticklabels(class_names)
    colourbar.set_label("class")
    if colourbar.solids is not None:  # drawn for the scatter's colour map
        colourbar.solids.set_alpha(1.0)
    low, high = grid_range
    axes.add_patch(Rectangle((low, low), high - low, high - low, fill=False, linestyle="--",
                             linewidth=1.0, edgecolor="black", label="manifold grid"))
    axes.legend(loc="upper right")
    axes.set_aspect("equal")
    axes.set_xlabel(axis_label(dims[0]))
    axes.set_ylabel(axis_label(dims[1]))
    axes.set_title(f"Encoder means z_mean of {len(labels)} test images, by class")
    axes.grid(True, linewidth=0.3, alpha=0.5)
    return figure


def board_axes(figure: Figure, board: np.ndarray, title: str) -> Axes:
    """Axes showing a board of tiled images, without x ticks."""
    axes = figure.add_subplot()
    axes.imshow(board, cmap=IMAGE_CMAP, vmin=0.0, vmax=1.0, interpolation="antialiased")
    axes.set_xticks([])
    axes.set_title(title)
    return axes


def reconstructions_figure(originals: np.ndarray, reconstructions: np.ndarray) -> Figure:
    """Originals on the top row, their reconstructions (decoder means) below."""
    n = len(originals)
    side = image_side(originals.shape[1])
    board = tile_grid(np.concatenate([originals, reconstructions]), 2, n)
    figure = new_figure(RECONSTRUCTIONS_SIZE)
    axes = board_axes(figure, board, f"{n} test images (top) and their reconstructions (bottom)")
    axes.set_yticks([(side - 1) / 2, side + (side - 1) / 2], ["original", "reconstruction"])
    return figure


def samples_figure(images: np.ndarray, seed: int) -> Figure:
    """Decoded samples z ~ N(0, I) on a square-ish board."""
    n = len(images)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    figure = new_figure(SAMPLES_SIZE)
    axes = board_axes(figure, tile_grid(images, rows, cols),
                       f"Decoder means of {n} latent samples z ~ N(0, I) (seed {seed})")
    axes.set_yticks([])
    return figure


def learning_curves_figure(history: Mapping[str, Sequence[float]]) -> Figure:
    """Per-epoch loss and −ELBO (left) and the KL term (right), training against validation."""
    figure = new_figure(CURVES_SIZE)
    left, right = figure.subplots(1, 2)
    epochs = np.asarray(history["epoch"])
    for axes, names, title in (
        (left, ("loss", "neg_elbo"), "Training objective (loss, with β) and −ELBO (β = 1)"),
        (right, ("kl_loss",), "KL term KL(q(z|x) ‖ N(0, I))"),
    ):
        for index, name in enumerate(names):
            colour = f"C{index}"
            axes.plot(epochs, history[name], "o-", color=colour, label=f"train {name}")
            if f"val_{name}" in history:
                axes.plot(epochs, history[f"val_{name}"], "s--", color=colour, label=f"validation {name}")
        axes.set_xlabel("epoch")
        axes.set_ylabel("nats per image")
        axes.set_title(title)
        axes.grid(True, linewidth=0.3, alpha=0.5)
        axes.legend()
    left.xaxis.get_major_locator().set_params(integer=True)
    right.xaxis.get_major_locator().set_params(integer=True)
    return figure


def figure_png(figure: Figure) -> bytes:
    """``figure`` as PNG bytes of exactly ``figsize × DPI`` pixels, in memory, so a report writes nothing
    until every file of it has rendered."""
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=DPI, format="png")
    return buffer.getvalue()


PER_CLASS_SIZE = (9.0, 4.5)


def per_class_figure(rows: Sequence[tuple[str, float]]) -> Figure:
    """Test −ELBO per class as horizontal bars, one class colour each, the value written at each bar's end."""
    figure = new_figure(PER_CLASS_SIZE)
    axes = figure.add_subplot()
    names, values = [name for name, _ in rows], [value for _, value in rows]
    cmap = class_colors(len(rows))
    bars = axes.barh(range(len(rows)), values, color=[cmap(k) for k in range(len(rows))])
    axes.bar_label(bars, labels=[f"{value:.1f}" for value in values], padding=3, fontsize="small")
    axes.set_yticks(range(len(rows)), names)
    axes.invert_yaxis()
    axes.set_xlim(0, max(values, default=1.0) * 1.12)
    axes.set_xlabel("test −ELBO, nats per image (lower is better)")
    axes.set_ylabel("class")
    axes.set_title("Test −ELBO by class")
    axes.grid(True, axis="x", linewidth=0.3, alpha=0.5)
    return figure
