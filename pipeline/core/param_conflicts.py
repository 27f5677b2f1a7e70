"""Params valid one by one that do not work together, each named by the dotted key to change.

The schema (``pipeline.core.params``) calls ``conflicting_params`` once every single value is within
its bounds, so the messages here may assume the bounds hold.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.core.param_sections import TrainParams
    from pipeline.core.params import Params

MAX_LATENT_DRAWS = 2**25
"""evaluate holds batch_size × samples × latent_dim normal draws per batch, twice over: 128 MiB of float32 each."""
MAX_HIDDEN_ACTIVATIONS = 2**27
"""A training step holds several (batch_size × z_samples) × intermediate_dim tensors (activations, gradients):
512 MiB each."""
OPTIMIZER_SETTINGS = ("rmsprop", "adam")
"""Optimizers whose own settings are params named ``train.<optimizer>_<Keras argument>``."""


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
    train, width = params.train, params.model.intermediate_dim
    activations = train.batch_size * train.z_samples * width
    if activations > MAX_HIDDEN_ACTIVATIONS:
        conflicts.append(("train.batch_size", (
            f"{train.batch_size} images × train.z_samples {train.z_samples} × model.intermediate_dim {width} = "
            f"{activations} hidden activations per step, more than {MAX_HIDDEN_ACTIVATIONS}; "
            f"use train.batch_size <= {MAX_HIDDEN_ACTIVATIONS // (train.z_samples * width)}")))
    return conflicts + training_conflicts(train)


def training_conflicts(train: "TrainParams") -> list[tuple[str, str]]:
    """Train params that would be silently ignored or that contradict each other.

    A setting that has no effect (Adam's β₂ under RMSprop, a decay under the constant schedule) is refused
    rather than ignored, so two runs that differ in params always differ in what they did.
    """
    conflicts = [(f"train.{key}", f"{value} has no effect with train.optimizer {train.optimizer}; set it back to "
                                  f"{default} or use train.optimizer: {key.split('_')[0]}")
                 for key, value, default in _changed(train, OPTIMIZER_SETTINGS) if not key.startswith(train.optimizer)]
    if train.lr_schedule == "constant":
        conflicts += [(f"train.{key}", f"{value} has no effect with train.lr_schedule constant; set it back to "
                                       f"{default} or use train.lr_schedule: cosine or exponential")
                      for key, value, default in _changed(train, ("lr_final_fraction",))]
    elif train.lr_schedule == "exponential" and train.lr_final_fraction == 0:
        conflicts.append(("train.lr_final_fraction", "0 is never reached by an exponential decay; use a fraction "
                                                     "above 0, e.g. 0.1, or train.lr_schedule: cosine"))
    for key in ("lr_warmup_epochs", "beta_warmup_epochs"):
        if getattr(train, key) > train.epochs:
            conflicts.append((f"train.{key}", f"{getattr(train, key)} is longer than train.epochs {train.epochs}, so "
                                              f"the warm-up would never end; use at most {train.epochs}"))
    if train.objective == "iwae":
        if train.beta != 1:
            conflicts.append(("train.beta", f"{train.beta} weighs a KL term that the importance-weighted bound (train."
                                            "objective iwae) does not have; use train.beta: 1.0 or objective elbo"))
        if train.beta_warmup_epochs:
            conflicts.append(("train.beta_warmup_epochs", "the importance-weighted bound (train.objective iwae) has "
                                                          "no KL term to warm up; use 0 or train.objective: elbo"))
    return conflicts


def _changed(train: "TrainParams", prefixes: tuple[str, ...]) -> list[tuple[str, Any, Any]]:
    """``(key, value, default)`` of each train param named ``<one of prefixes>...`` whose value is not its default."""
    fields = type(train).model_fields
    return [(key, getattr(train, key), field.default) for key, field in fields.items()
            if key.startswith(prefixes) and getattr(train, key) != field.default]
