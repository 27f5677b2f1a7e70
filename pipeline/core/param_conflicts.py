"""Params valid one by one that do not work together, each named by the dotted key to change and a value that works.

``pipeline.core.params`` runs this after each section has passed its own bounds, and reports each conflict
as one line of its error.
"""

from typing import TYPE_CHECKING

from pipeline.core.params import MAX_HIDDEN_ACTIVATIONS, MAX_LATENT_DRAWS

if TYPE_CHECKING:
    from pipeline.core.params import Params


def conflicting_params(params: "Params") -> list[tuple[str, str]]:
    """Params valid one by one that do not work together: ``(dotted key to change, why and what would work)``.

    The single-key bounds keep every suggested value >= 1 (at most 10 000 samples × 784 latent dimensions).
    """
    conflicts = []
    latent_dim, dims = params.model.latent_dim, list(params.report.grid_dims)
    if latent_dim > 1 and max(dims) >= latent_dim:  # a 1-D latent space is drawn along z1 alone
        conflicts.append(("report.grid_dims", f"{dims} are not two of the model.latent_dim {latent_dim} dimensions; "
                                              f"use two distinct dimensions below {latent_dim}, e.g. [0, 1]"))
    if params.model.conditional and latent_dim == 1:  # the per-class manifolds are drawn on a latent plane
        conflicts.append(("model.latent_dim", "1 has no latent plane for the conditional VAE's per-class manifolds; "
                                              "use model.latent_dim >= 2 or model.conditional: false"))
    evaluate = params.evaluate
    if evaluate.nearest_neighbors >= evaluate.sample_count:  # a point's k-th neighbour among the others
        conflicts.append(("evaluate.nearest_neighbors", (
            f"{evaluate.nearest_neighbors} neighbours need more than evaluate.sample_count {evaluate.sample_count} "
            f"points; use evaluate.nearest_neighbors <= {evaluate.sample_count - 1}")))
    samples = max(evaluate.elbo_samples, evaluate.is_samples)
    draws = evaluate.batch_size * samples * latent_dim
    if draws > MAX_LATENT_DRAWS:
        conflicts.append(("evaluate.batch_size", (
            f"{evaluate.batch_size} images × {samples} samples (evaluate.is_samples or elbo_samples) × "
            f"model.latent_dim {latent_dim} = {draws} latent draws per batch, more than {MAX_LATENT_DRAWS}; "
            f"use evaluate.batch_size <= {MAX_LATENT_DRAWS // (samples * latent_dim)}")))
    activations = params.train.batch_size * params.model.intermediate_dim
    if activations > MAX_HIDDEN_ACTIVATIONS:
        conflicts.append(("train.batch_size", (
            f"{params.train.batch_size} images × model.intermediate_dim {params.model.intermediate_dim} = "
            f"{activations} hidden activations per step, more than {MAX_HIDDEN_ACTIVATIONS}; "
            f"use train.batch_size <= {MAX_HIDDEN_ACTIVATIONS // params.model.intermediate_dim}")))
    return conflicts
