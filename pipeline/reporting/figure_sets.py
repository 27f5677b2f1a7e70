"""Which figures each kind of model gets: the unconditional VAE's manifold, latent scatter, reconstructions and
samples (a strip and a histogram for a 1-D latent space), and the conditional VAE's counterparts under the same
file names, so the page and the model card name one set whatever the kind.

The figures themselves are drawn in ``figures`` and ``conditional_figures``; this module only composes them.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
from matplotlib.figure import Figure

from pipeline.core.param_sections import ReportParams
from pipeline.reporting import conditional_figures, figures


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
