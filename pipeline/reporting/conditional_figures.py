"""The conditional VAE's figures: the decoder asked for each class in turn.

In the conditional VAE (Sohn et al. 2015) the label is an input of the decoder, so z only has to
carry what the label does not: the style (slant, width, stroke). Each figure holds the latent
points fixed and varies the label, which shows that split. Pure functions from arrays to
``Figure`` objects, laid out and sized as ``pipeline.reporting.figures``.
"""

import math
from collections.abc import Callable, Sequence

import numpy as np
from matplotlib.figure import Figure

from pipeline.core.param_sections import ReportParams
from pipeline.reporting.figures import (
    IMAGE_CMAP,
    axis_label,
    board_axes,
    figure_png,
    image_side,
    manifold_figure,
    manifold_points,
    new_figure,
    tile_grid,
)

CLASS_MANIFOLDS_SIZE = (25.0, 11.0)
STYLES_SIZE = (12.0, 14.0)
CLASS_SAMPLES_SIZE = (9.0, 10.0)
PANEL_COLUMNS = 5

ConditionalDecodeFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""Pixel means (n, pixels) of latent points (n, latent_dim) under class indices (n,)."""


def decode_under_every_class(decode_fn: ConditionalDecodeFn, z: np.ndarray, num_classes: int) -> np.ndarray:
    """Decode every latent point under every class in one call: (num_classes, n, pixels)."""
    n = len(z)
    labels = np.repeat(np.arange(num_classes), n)
    decoded = np.asarray(decode_fn(np.tile(z, (num_classes, 1)), labels))
    return decoded.reshape(num_classes, n, -1)


def class_manifold_grids(decode_fn: ConditionalDecodeFn, num_classes: int, grid_size: int,
                         grid_range: Sequence[float], latent_dim: int,
                         dims: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """One decoded grid per class over the same latent points: ``(boards (C, H, W), z values)``."""
    points, z_values = manifold_points(grid_size, grid_range, latent_dim, dims)
    decoded = decode_under_every_class(decode_fn, points, num_classes)
    return np.stack([tile_grid(images, grid_size, grid_size) for images in decoded]), z_values


def class_manifolds_figure(boards: np.ndarray, z_values: np.ndarray, latent_dim: int, dims: Sequence[int],
                           class_names: Sequence[str]) -> Figure:
    """One panel per class, all over the same grid; z grows rightwards and upwards as in the manifold figure."""
    grid_size = len(z_values)
    side = boards.shape[1] // grid_size
    columns = min(PANEL_COLUMNS, len(boards))
    rows = math.ceil(len(boards) / columns)
    figure = new_figure(CLASS_MANIFOLDS_SIZE)
    panels = np.atleast_1d(figure.subplots(rows, columns, sharex=True, sharey=True)).ravel()
    ticks = np.array([0, grid_size - 1])  # the grid's two ends: small panels have no room for more
    centres = side * ticks + (side - 1) / 2
    for index, axes in enumerate(panels):
        if index >= len(boards):
            axes.set_axis_off()
            continue
        axes.imshow(boards[index], cmap=IMAGE_CMAP, vmin=0.0, vmax=1.0, interpolation="antialiased")
        axes.set_title(f"class {class_names[index]}")
        axes.set_xticks(centres, [f"{z_values[k]:.1f}" for k in ticks])
        axes.set_yticks(centres, [f"{z_values[::-1][k]:.1f}" for k in ticks])
        if index % columns == 0:
            axes.set_ylabel(axis_label(dims[1]))
        if index >= len(boards) - columns:
            axes.set_xlabel(axis_label(dims[0]))
    others = ", other dimensions at 0" if latent_dim > 2 else ""
    figure.suptitle(f"The same {grid_size}×{grid_size} grid of latent points "
                    f"({axis_label(dims[0])}, {axis_label(dims[1])}){others}, decoded under each label")
    return figure


def styles_figure(originals: np.ndarray, decoded: np.ndarray, labels: np.ndarray,
                  class_names: Sequence[str]) -> Figure:
    """Test images on top; below, each one's z_mean decoded under every label, one row per class.

    ``decoded`` is (num_classes, n, pixels); the tile under an image's own label is its reconstruction.
    """
    num_classes, n, pixels = decoded.shape
    side = image_side(pixels)
    board = tile_grid(np.concatenate([originals, *decoded]), num_classes + 1, n)
    figure = new_figure(STYLES_SIZE)
    axes = board_axes(figure, board, f"Same style, every class: {n} test images (top) and their z_mean "
                                      "decoded under each label (rows)")
    axes.set_yticks([row * side + (side - 1) / 2 for row in range(num_classes + 1)],
                    ["test image", *(f"label {name}" for name in class_names)])
    axes.set_xticks([col * side + (side - 1) / 2 for col in range(n)],
                    [f"true {class_names[label]}" for label in labels], rotation=90)
    return figure


def class_samples_figure(decoded: np.ndarray, class_names: Sequence[str], seed: int) -> Figure:
    """Latent samples z ~ N(0, I) (columns) decoded under every label (rows): ``decoded`` is (C, k, pixels)."""
    num_classes, k, pixels = decoded.shape
    side = image_side(pixels)
    figure = new_figure(CLASS_SAMPLES_SIZE)
    axes = board_axes(figure, tile_grid(decoded.reshape(-1, pixels), num_classes, k),
                       f"Decoder means of {k} latent samples z ~ N(0, I) (columns, seed {seed}) under each label")
    axes.set_yticks([row * side + (side - 1) / 2 for row in range(num_classes)],
                    [f"label {name}" for name in class_names])
    return figure


def one_class_manifold_pngs(decode_fn: ConditionalDecodeFn, settings: ReportParams, grid_range: Sequence[float],
                            latent_dim: int, class_names: Sequence[str]) -> dict[str, bytes]:
    """Each class's manifold alone, at the full size of the unconditional manifold figure: class name → PNG.

    The ten-panel figure shrinks each digit to a few pixels; the report page shows these one at a time instead.
    """
    boards, z_values = class_manifold_grids(decode_fn, len(class_names), settings.grid_size, grid_range, latent_dim,
                                            settings.grid_dims)
    pngs = {}
    for name, board in zip(class_names, boards, strict=True):
        figure = manifold_figure(board, z_values, latent_dim, settings.grid_dims)
        figure.axes[0].set_title(f"Label {name}: {figure.axes[0].get_title()}")
        pngs[name] = figure_png(figure)
    return pngs
