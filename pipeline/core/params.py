"""The params schema: params.yaml validated into immutable, typed sections for every stage's knobs.

Every wrong type, out-of-range value, unknown key or typo is reported with its dotted key
before any stage does work, and before Keras and its backend are imported.
"""

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from pipeline.core.backend import Backend
from pipeline.core.errors import PipelineError, clipped
from pipeline.core.param_conflicts import conflicting_params
from pipeline.core.paths import PARAMS_FILE
from pipeline.core.strict_yaml import YamlError, load_yaml_file, yaml_12_hint

DatasetName = Literal["mnist", "fashion_mnist"]
"""The datasets ``pipeline.data.datasets`` describes (a test keeps the two in step)."""

STAGE_PARAMS: dict[str, tuple[str, ...]] = {
    "download": ("data.dataset", "data.mirrors"),
    "prepare": ("data.dataset", "data.val_fraction", "data.seed"),
    "train": ("data.dataset", "model", "train"),
    "classifier": ("data.dataset", "classifier"),
    "evaluate": ("data.dataset", "train.beta", "train.backend", "evaluate"),
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


class ParamsError(PipelineError):
    """params.yaml is missing, unreadable or holds a value the pipeline rejects.

    ``problems`` lists each bad value as ``"dotted.key: what is wrong"`` when validation found them.
    """

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


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


EXPECTED = {"bool_type": "bool", "string_type": "text"}
"""What a pydantic error type says was expected, for the YAML hint."""


def _describe(error: ValidationError) -> tuple[str, ...]:
    """One ``"dotted.key: what is wrong"`` per bad value or conflict, each value clipped to one short line."""
    lines = []
    for problem in error.errors():
        if problem["type"] == CONFLICT:
            lines += [f"{key}: {reason}" for key, reason in problem["ctx"]["conflicts"]]
            continue
        dotted = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            allowed = _allowed_keys(problem["loc"])
            message = "unknown key" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
        got = problem.get("input")
        shown = clipped(repr(list(got) if isinstance(got, tuple) else got))
        hint = yaml_12_hint(got, EXPECTED.get(problem["type"], ""))
        lines.append(f"{clipped(dotted)}: {message} (got {shown}){hint}")
    return tuple(lines)


def parse_params(raw: Any) -> Params:
    """Validate an already-loaded params mapping."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ParamsError(f"params must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(lists_to_tuples(raw))
    except ValidationError as error:
        problems = _describe(error)
        raise ParamsError("invalid params:" + "".join(f"\n  {line}" for line in problems), problems) from None


def lists_to_tuples(value: Any) -> Any:
    """YAML has lists where the schema has fixed tuples; strict mode wants the tuple."""
    if isinstance(value, Mapping):
        return {key: lists_to_tuples(item) for key, item in value.items()}
    if isinstance(value, list):
        return tuple(lists_to_tuples(item) for item in value)
    return value


def read_yaml_file(path: Path, error: type[PipelineError] = ParamsError) -> Any:
    """The YAML document in ``path``; ``error`` in one line naming the file when it is unreadable or not YAML."""
    try:
        return load_yaml_file(path)
    except OSError as cause:
        raise error(f"cannot read {path}: {cause.strerror}") from None
    except YamlError as cause:
        raise error(f"{path}: {cause}") from None


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Read and validate params.yaml; raise ``ParamsError`` naming the file and each bad key."""
    raw = read_yaml_file(path)
    try:
        return parse_params(raw)
    except ParamsError as error:
        raise ParamsError(f"{path}: {error}", error.problems) from None
