"""The params schema: params.yaml validated into immutable, typed sections for every stage's knobs.

Every wrong type, out-of-range value, unknown key or typo is reported with its dotted key
before any stage does work, and before TensorFlow is imported.
"""

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from pipeline.core.errors import PipelineError
from pipeline.core.paths import PARAMS_FILE
from pipeline.core.strict_yaml import load_yaml

DatasetName = Literal["mnist", "fashion_mnist"]
"""The datasets ``pipeline.data.datasets`` describes (a test keeps the two in step)."""

STAGE_PARAMS: dict[str, tuple[str, ...]] = {
    "download": ("data.dataset", "data.mirrors"),
    "prepare": ("data.dataset", "data.val_fraction", "data.seed"),
    "train": ("data.dataset", "model", "train"),
    "classifier": ("data.dataset", "classifier"),
    "evaluate": ("data.dataset", "train.beta", "evaluate"),
    "report": ("data", "model", "train", "evaluate", "report", "check"),
}
"""The params each DVC stage reads, in pipeline order: dvc.yaml lists the same (a test checks), so a change
reruns exactly the stages it affects. A key is ``section`` (all of it) or ``section.key``."""


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
MAX_LATENT_DRAWS = 2**25
"""evaluate holds batch_size × samples × latent_dim normal draws per batch, twice over: 128 MiB of float32 each."""
MAX_CLASSIFIER_EPOCHS = 100
"""About 4 s an epoch on 2 CPU cores: 100 epochs is 7 minutes for a network that only measures samples."""
MAX_BOOTSTRAP_RESAMPLES = 10_000
"""Each resample recomputes the Fréchet distance (two 128 × 128 covariances, ~20 ms): 10 000 is minutes."""
MAX_HIDDEN_ACTIVATIONS = 2**27
"""A training step holds several batch_size × intermediate_dim tensors (activations, gradients): 512 MiB each."""


class ParamsError(PipelineError):
    """params.yaml is missing, unreadable or holds a value the pipeline rejects."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class DataParams(_Section):
    dataset: DatasetName = "mnist"
    mirrors: tuple[str, ...] = Field(
        default=(), description="Sources tried in order; empty means the dataset's public mirrors."
    )
    val_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    seed: int = Field(default=42, ge=0, le=MAX_SEED)


class ModelParams(_Section):
    latent_dim: int = Field(default=2, ge=1, le=IMAGE_PIXELS)
    intermediate_dim: int = Field(default=256, ge=1, le=MAX_INTERMEDIATE_DIM)
    conditional: bool = Field(
        default=False, description="The conditional VAE (Sohn et al. 2015): encoder and decoder also see the label."
    )


class TrainParams(_Section):
    epochs: int = Field(default=5, ge=1, le=MAX_EPOCHS)
    batch_size: int = Field(default=100, ge=1, le=TRAIN_SET_SIZE)
    optimizer: Literal["rmsprop", "adam", "sgd"] = "rmsprop"
    learning_rate: float = Field(default=0.001, gt=0.0)
    beta: float = Field(default=0.1, ge=0.0)
    seed: int = Field(default=42, ge=0, le=MAX_SEED)
    experiment: str = Field(default="vae-mnist", min_length=1)


class ClassifierParams(_Section):
    """The convolutional classifier whose features score the decoder's samples (``pipeline.sample_quality``)."""

    epochs: int = Field(default=3, ge=1, le=MAX_CLASSIFIER_EPOCHS)
    batch_size: int = Field(default=128, ge=1, le=TRAIN_SET_SIZE)
    learning_rate: float = Field(default=0.003, gt=0.0, le=1.0, description="Adam's, decayed linearly to 0.")
    seed: int = Field(default=0, ge=0, le=MAX_SEED)


class EvaluateParams(_Section):
    elbo_samples: int = Field(default=10, ge=1, le=MAX_SAMPLES)
    is_samples: int = Field(default=200, ge=1, le=MAX_SAMPLES)
    batch_size: int = Field(default=500, ge=1, le=TEST_SET_SIZE)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    # A covariance needs 2 rows; the decoder samples are compared with as many test images, so no more than those.
    sample_count: int = Field(default=10_000, ge=2, le=TEST_SET_SIZE)
    bootstrap_resamples: int = Field(default=100, ge=2, le=MAX_BOOTSTRAP_RESAMPLES)
    nearest_neighbors: int = Field(default=3, ge=1, le=TEST_SET_SIZE - 1,
                                   description="k of the k-NN manifolds of precision and recall.")


class ReportParams(_Section):
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


class Tolerance(_Section):
    """How far a metric may move in its bad direction before the regression gate fails."""

    higher_is_better: bool = False
    tolerance: float = Field(default=0.0, ge=0.0)


REGISTERED_MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
"""Letters, digits, ``.``, ``_`` and ``-``: a name that fits unquoted in ``models:/<name>@champion``."""


class RegisteredModels(_Section):
    """The MLflow registered model that ``check --promote`` adds each part of the VAE to."""

    encoder: str = Field(default="vae-mnist-encoder", pattern=REGISTERED_MODEL_NAME)
    decoder: str = Field(default="vae-mnist-decoder", pattern=REGISTERED_MODEL_NAME)

    @model_validator(mode="after")
    def _distinct(self) -> "RegisteredModels":
        if self.encoder == self.decoder:
            raise ValueError("encoder and decoder need two different names")
        return self


class CheckParams(_Section):
    tolerances: dict[str, Tolerance] = Field(default_factory=dict)
    registered_models: RegisteredModels = RegisteredModels()


class Params(_Section):
    data: DataParams = DataParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    classifier: ClassifierParams = ClassifierParams()
    evaluate: EvaluateParams = EvaluateParams()
    report: ReportParams = ReportParams()
    check: CheckParams = CheckParams()

    @model_validator(mode="after")
    def _consistent(self) -> "Params":
        from pipeline.core.param_conflicts import conflicting_params  # it reads this module's bounds

        conflicts = conflicting_params(self)
        if conflicts:
            raise PydanticCustomError(CONFLICT, "{conflicts}", {"conflicts": conflicts})
        return self

    def flat(self) -> dict[str, Any]:
        """Every param as ``{"section.key": value}``, the form MLflow and DVC show."""
        return dict(flatten(self.model_dump(mode="json")))

    def read_by(self, *stages: str) -> dict[str, Any]:
        """The params ``stages`` read (``STAGE_PARAMS``), flat, in schema order."""
        selected = [key for stage in stages for key in STAGE_PARAMS[stage]]
        return {key: value for key, value in self.flat().items()
                if any(key == chosen or key.startswith(f"{chosen}.") for chosen in selected)}

    def lineage(self, stage: str) -> dict[str, Any]:
        """The params of ``stage`` and of every stage before it: all that shaped its output."""
        order = list(STAGE_PARAMS)
        return self.read_by(*order[: order.index(stage) + 1])

    def section(self, name: str) -> dict[str, Any]:
        """One section's params as ``{"section.key": value}``."""
        return dict(flatten(getattr(self, name).model_dump(mode="json"), f"{name}."))


CONFLICT = "params_conflict"
"""The pydantic error type of params valid one by one but not together; its context lists (dotted key, reason)."""


def flatten(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Nested mappings as ``("a.b.c", leaf)`` pairs."""
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from flatten(value, f"{dotted}.")
        else:
            yield dotted, value


def _allowed_keys(location: tuple[Any, ...]) -> list[str]:
    """The keys the schema allows in the section that holds ``location``."""
    model: Any = Params
    for part in location[:-1]:
        annotation = model.model_fields[part].annotation if isinstance(part, str) else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _describe(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        if problem["type"] == CONFLICT:
            lines += [f"  {key}: {reason}" for key, reason in problem["ctx"]["conflicts"]]
            continue
        dotted = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            allowed = _allowed_keys(problem["loc"])
            message = "unknown key" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
        got = problem.get("input")
        lines.append(f"  {dotted}: {message} (got {list(got) if isinstance(got, tuple) else got!r})")
    return "\n".join(lines)


def parse_params(raw: Any) -> Params:
    """Validate an already-loaded params mapping."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ParamsError(f"params must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(_lists_to_tuples(raw))
    except ValidationError as error:
        raise ParamsError(f"invalid params:\n{_describe(error)}") from None


def _lists_to_tuples(value: Any) -> Any:
    """YAML has lists where the schema has fixed tuples; strict mode wants the tuple."""
    if isinstance(value, Mapping):
        return {key: _lists_to_tuples(item) for key, item in value.items()}
    if isinstance(value, list):
        return tuple(_lists_to_tuples(item) for item in value)
    return value


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Read and validate params.yaml; raise ``ParamsError`` naming the file and each bad key."""
    try:
        with open(path, encoding="utf-8") as stream:
            raw = load_yaml(stream)
    except OSError as error:
        raise ParamsError(f"cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path} is not valid YAML: {error}") from None
    try:
        return parse_params(raw)
    except ParamsError as error:
        raise ParamsError(f"{path}: {error}") from None
