"""The params: params.yaml read and validated into the sections of ``pipeline.core.param_sections``.

Every wrong type, out-of-range value, unknown key or typo is reported with its dotted key
before any stage does work, and before Keras and its backend are imported.
"""

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from pipeline.core.errors import PipelineError, clipped
from pipeline.core.param_conflicts import conflicting_params
from pipeline.core.param_sections import (
    CheckParams,
    ClassifierParams,
    DataParams,
    EvaluateParams,
    ModelParams,
    ReportParams,
    Section,
    TrainParams,
)
from pipeline.core.paths import PARAMS_FILE
from pipeline.core.strict_yaml import YamlError, load_yaml_file, yaml_12_hint

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


class ParamsError(PipelineError):
    """params.yaml is missing, unreadable or holds a value the pipeline rejects.

    ``problems`` lists each bad value as ``"dotted.key: what is wrong"`` when validation found them.
    """

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class Params(Section):
    """Every section of params.yaml, checked one by one and then together (``pipeline.core.param_conflicts``)."""

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
