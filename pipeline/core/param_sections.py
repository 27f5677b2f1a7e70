"""The params sections: one immutable, typed model per section of params.yaml, with each bound and its reason.

A bound is the limit of what consumes the param (Keras, NumPy, the figures, the time a run may take), so a value
outside it is refused with its dotted key before any stage does work (``pipeline.core.params`` reads the file).
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.core.backend import Backend

DatasetName = Literal["mnist", "fashion_mnist"]
"""The datasets ``pipeline.data.datasets`` describes (a test keeps the two in step)."""

# Limits of what consumes each param, checked before any work starts (the errors name the dotted key).
MAX_SEED = 2**32 - 1
"""``keras.utils.set_random_seed`` seeds NumPy's legacy generator, which takes 0 .. 2**32 - 1; every section's
seed shares the bound, so a seed that works in one section works in all."""
MAX_EPOCHS = 10_000
"""About 1.2 s an epoch on 2 CPU cores: 10 000 epochs is over 3 hours, each a row of the history and its plots."""
TRAIN_SET_SIZE = 60_000
"""Training images in either dataset: a larger batch would be the whole set, so it bounds train.batch_size."""
TEST_SET_SIZE = 10_000
"""Test images in either dataset: evaluate never scores more in one batch."""
IMAGE_PIXELS = 784
"""A latent space is a compression of the 28 × 28 image: no wider than its pixels."""
MAX_INTERMEDIATE_DIM = 4096
"""evaluate decodes up to 25 000 latent points in one compiled call: 4096 hidden units make that ~400 MB."""
MAX_SAMPLES = 10_000
"""Monte Carlo draws per test image: each one decodes the whole test set, 50 × the default's time at the bound."""
MAX_TRAIN_SAMPLES = 1000
"""Draws of z per training image: each decodes the batch once more, so an epoch takes ~1000 × 1.2 s at the bound."""
MIN_EPSILON = 1e-30
"""Far above float32's smallest normal number (1.2e-38), so ε never rounds to 0, where a weight whose gradient is
exactly 0 would take 0 / 0 = NaN as its step; torch's RMSprop ε of 1e-8 outside the root is about 1e-16 inside it."""
MAX_EPSILON = 1.0
"""ε only guards a division: at 1 it already outweighs the squared gradients of this model (about 1e-6 to 1) and the
method becomes SGD with its step scaled by 1 / √ε or 1 / ε; use train.optimizer sgd for that."""
MAX_CLASSIFIER_EPOCHS = 100
"""About 4 s an epoch on 2 CPU cores: 100 epochs is 7 minutes for a network that only measures samples."""
MAX_BOOTSTRAP_RESAMPLES = 10_000
"""Each resample recomputes the Fréchet distance (two 128 × 128 covariances, ~20 ms): 10 000 is minutes."""


class Section(BaseModel):
    """A section: unknown keys, type coercion, NaN and infinity refused; immutable once read."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class DataParams(Section):
    dataset: DatasetName = "mnist"
    mirrors: tuple[str, ...] = Field(
        default=(), description="Sources tried in order; empty means the dataset's public mirrors."
    )
    val_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    seed: int = Field(default=42, ge=0, le=MAX_SEED)


class ModelParams(Section):
    latent_dim: int = Field(default=2, ge=1, le=IMAGE_PIXELS)
    intermediate_dim: int = Field(default=256, ge=1, le=MAX_INTERMEDIATE_DIM)
    conditional: bool = Field(
        default=False, description="The conditional VAE (Sohn et al. 2015): encoder and decoder also see the label."
    )


class TrainParams(Section):
    """The training recipe. Optimizer settings are Keras' arguments, prefixed by the optimizer that reads them,
    with Keras' defaults; a setting for another optimizer than ``optimizer`` must keep its default."""

    epochs: int = Field(default=5, ge=1, le=MAX_EPOCHS)
    batch_size: int = Field(default=100, ge=1, le=TRAIN_SET_SIZE)
    optimizer: Literal["rmsprop", "adam", "sgd"] = "rmsprop"
    learning_rate: float = Field(default=0.001, gt=0.0)
    # A decay factor of 1 never forgets its zero start (Adam's bias correction divides by 1 - factor^t = 0).
    rmsprop_rho: float = Field(default=0.9, ge=0.0, lt=1.0)
    rmsprop_momentum: float = Field(default=0.0, ge=0.0, lt=1.0)
    rmsprop_epsilon: float = Field(default=1e-7, description="Added inside the square root, as Keras does.")
    adam_beta_1: float = Field(default=0.9, ge=0.0, lt=1.0)
    adam_beta_2: float = Field(default=0.999, ge=0.0, lt=1.0)
    adam_epsilon: float = Field(default=1e-7, description="Added outside the square root.")
    lr_schedule: Literal["constant", "cosine", "exponential"] = "constant"
    lr_warmup_epochs: float = Field(default=0.0, ge=0.0, le=MAX_EPOCHS)
    lr_final_fraction: float = Field(default=0.0, ge=0.0, le=1.0, description="Of learning_rate, at the last step.")
    beta: float = Field(default=0.1, ge=0.0)
    beta_warmup_epochs: float = Field(default=0.0, ge=0.0, le=MAX_EPOCHS)
    objective: Literal["elbo", "iwae"] = "elbo"
    z_samples: int = Field(default=1, ge=1, le=MAX_TRAIN_SAMPLES)
    seed: int = Field(default=42, ge=0, le=MAX_SEED)
    experiment: str = Field(default="vae-mnist", min_length=1)
    backend: Backend = Field(
        default="tensorflow", description="The Keras backend train, evaluate and report run on: tensorflow or jax "
                                          "(the jax extra); see docs/backends.md."
    )

    @field_validator("rmsprop_epsilon", "adam_epsilon")
    @classmethod
    def _guards_a_division(cls, epsilon: float) -> float:
        if not MIN_EPSILON <= epsilon <= MAX_EPSILON:
            raise ValueError(f"must be within {MIN_EPSILON:g} and {MAX_EPSILON:g}")
        return epsilon


class ClassifierParams(Section):
    """The convolutional classifier whose features score the decoder's samples (``pipeline.sample_quality``)."""

    epochs: int = Field(default=3, ge=1, le=MAX_CLASSIFIER_EPOCHS)
    batch_size: int = Field(default=128, ge=1, le=TRAIN_SET_SIZE)
    learning_rate: float = Field(default=0.003, gt=0.0, le=1.0, description="Adam's, decayed linearly to 0.")
    seed: int = Field(default=0, ge=0, le=MAX_SEED)


class EvaluateParams(Section):
    elbo_samples: int = Field(default=10, ge=1, le=MAX_SAMPLES)
    is_samples: int = Field(default=200, ge=1, le=MAX_SAMPLES)
    batch_size: int = Field(default=500, ge=1, le=TEST_SET_SIZE)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    # A covariance needs 2 rows; the decoder samples are compared with as many test images, so no more than those.
    sample_count: int = Field(default=10_000, ge=2, le=TEST_SET_SIZE)
    bootstrap_resamples: int = Field(default=100, ge=2, le=MAX_BOOTSTRAP_RESAMPLES)
    nearest_neighbors: int = Field(default=3, ge=1, le=TEST_SET_SIZE - 1,
                                   description="k of the k-NN manifolds of precision and recall.")


class ReportParams(Section):
    # The figures have a fixed size: beyond these bounds their tiles shrink below a few pixels.
    grid_size: int = Field(default=30, ge=2, le=100)
    grid_range: tuple[float, float] = (-3.0, 3.0)
    grid_dims: tuple[int, int] = Field(default=(0, 1), description="Unused when model.latent_dim is 1.")
    manifold_range: Literal["data", "fixed"] = Field(
        default="data", description="data: the percentile box of the test codes; fixed: grid_range.")
    # Percentiles of the test codes' z_mean per plotted dimension; the manifold spans the box they make.
    range_percentiles: tuple[float, float] = (1.0, 99.0)
    n_reconstructions: int = Field(default=10, ge=1, le=50)
    n_samples: int = Field(default=100, ge=1, le=400)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)

    @field_validator("grid_range")
    @classmethod
    def _ordered(cls, grid_range: tuple[float, float]) -> tuple[float, float]:
        if not grid_range[0] < grid_range[1]:
            raise ValueError("must be [low, high] with low < high")
        return grid_range

    @field_validator("range_percentiles")
    @classmethod
    def _percentiles(cls, percentiles: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 <= percentiles[0] < percentiles[1] <= 100.0:
            raise ValueError("must be [low, high] with 0 <= low < high <= 100")
        return percentiles

    @field_validator("grid_dims")
    @classmethod
    def _distinct(cls, grid_dims: tuple[int, int]) -> tuple[int, int]:
        if grid_dims[0] == grid_dims[1] or min(grid_dims) < 0:
            raise ValueError("must be two distinct latent indices >= 0")
        return grid_dims


class Tolerance(Section):
    """How far a metric may move in its bad direction before the regression gate fails."""

    higher_is_better: bool = False
    tolerance: float = Field(default=0.0, ge=0.0)


REGISTERED_MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
"""Letters, digits, ``.``, ``_`` and ``-``: a name that fits unquoted in ``models:/<name>@champion``."""


class RegisteredModels(Section):
    """The MLflow registered model that ``check --promote`` adds each part of the VAE to."""

    encoder: str = Field(default="vae-mnist-encoder", pattern=REGISTERED_MODEL_NAME)
    decoder: str = Field(default="vae-mnist-decoder", pattern=REGISTERED_MODEL_NAME)

    @model_validator(mode="after")
    def _distinct(self) -> "RegisteredModels":
        if self.encoder == self.decoder:
            raise ValueError("encoder and decoder need two different names")
        return self


class CheckParams(Section):
    tolerances: dict[str, Tolerance] = Field(default_factory=dict)
    registered_models: RegisteredModels = RegisteredModels()
