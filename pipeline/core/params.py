"""The one reader of params.yaml: a validated, immutable schema for every stage's knobs.

Every wrong type, out-of-range value, unknown key or typo is reported with its dotted key
before any stage does work, and before TensorFlow is imported.
"""

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.core.errors import PipelineError
from pipeline.core.paths import PARAMS_FILE

DatasetName = Literal["mnist", "fashion_mnist"]
"""The datasets ``pipeline.data.datasets`` describes (a test keeps the two in step)."""

STAGE_PARAMS: dict[str, tuple[str, ...]] = {
    "download": ("data.dataset", "data.mirrors"),
    "prepare": ("data.dataset", "data.val_fraction", "data.seed"),
    "train": ("data.dataset", "model", "train"),
    "evaluate": ("data.dataset", "train.beta", "evaluate"),
    "report": ("data", "model", "train", "evaluate", "report"),
}
"""The params each DVC stage reads, in pipeline order: dvc.yaml lists the same (a test checks), so a change
reruns exactly the stages it affects. A key is ``section`` (all of it) or ``section.key``."""


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
    seed: int = Field(default=42, ge=0)


class ModelParams(_Section):
    latent_dim: int = Field(default=2, ge=1)
    intermediate_dim: int = Field(default=256, ge=1)


class TrainParams(_Section):
    epochs: int = Field(default=5, ge=1)
    batch_size: int = Field(default=100, ge=1)
    optimizer: Literal["rmsprop", "adam", "sgd"] = "rmsprop"
    learning_rate: float = Field(default=0.001, gt=0.0)
    beta: float = Field(default=0.1, ge=0.0)
    seed: int = Field(default=42, ge=0)
    experiment: str = Field(default="vae-mnist", min_length=1)


class EvaluateParams(_Section):
    elbo_samples: int = Field(default=10, ge=1)
    is_samples: int = Field(default=200, ge=1)
    batch_size: int = Field(default=500, ge=1)
    seed: int = Field(default=0, ge=0)


class ReportParams(_Section):
    grid_size: int = Field(default=30, ge=2, le=100)
    grid_range: tuple[float, float] = (-3.0, 3.0)
    grid_dims: tuple[int, int] = (0, 1)
    n_reconstructions: int = Field(default=10, ge=1, le=50)
    n_samples: int = Field(default=100, ge=1, le=400)
    seed: int = Field(default=0, ge=0)

    @field_validator("grid_range")
    @classmethod
    def _ordered(cls, grid_range: tuple[float, float]) -> tuple[float, float]:
        if not grid_range[0] < grid_range[1]:
            raise ValueError("must be [low, high] with low < high")
        return grid_range

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
    evaluate: EvaluateParams = EvaluateParams()
    report: ReportParams = ReportParams()
    check: CheckParams = CheckParams()

    @model_validator(mode="after")
    def _grid_dims_within_latent(self) -> "Params":
        if max(self.report.grid_dims) >= self.model.latent_dim:
            raise ValueError(
                f"report.grid_dims {list(self.report.grid_dims)} must index model.latent_dim "
                f"({self.model.latent_dim}) dimensions"
            )
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice in one mapping instead of keeping the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Read and validate params.yaml; raise ``ParamsError`` naming the file and each bad key."""
    try:
        with open(path, encoding="utf-8") as stream:
            raw = yaml.load(stream, Loader=_UniqueKeyLoader)
    except OSError as error:
        raise ParamsError(f"cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path} is not valid YAML: {error}") from None
    try:
        return parse_params(raw)
    except ParamsError as error:
        raise ParamsError(f"{path}: {error}") from None
