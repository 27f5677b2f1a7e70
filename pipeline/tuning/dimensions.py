"""The dimensions of a search space: a float or int range (optionally on a log scale) or a list of choices, each
optionally drawn only ``when`` other params hold given values; ``Dimension`` tells them apart by their keys.

Kept apart from ``space`` (which reads ``tune.yaml`` and checks it against the params) because Optuna's sampler
side (``study``) needs the shapes alone.
"""

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator


class StrictModel(BaseModel):
    """Unknown keys, coercions and non-finite numbers are refused, and a parsed value is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


Value = str | bool | int | float


class _Dimension(StrictModel):
    when: dict[str, Annotated[tuple[Value, ...], Field(min_length=1)]] = Field(default_factory=dict)
    """Draw this dimension only in trials where each named param holds one of the given values (a single value
    may be written without a list)."""

    @field_validator("when", mode="before")
    @classmethod
    def _values_as_tuples(cls, when: Any) -> Any:
        if not isinstance(when, Mapping):
            return when  # pydantic says it is not a mapping
        conditions = {key: tuple(wanted) if isinstance(wanted, list | tuple) else (wanted,)
                      for key, wanted in when.items()}
        for key, wanted in conditions.items():
            if not all(isinstance(value, Value) for value in wanted):
                raise ValueError(f"{key}: expected a value or a list of values, got {when[key]!r}")
        return conditions

    def applies(self, drawn: Mapping[str, Any]) -> bool:
        """Whether a trial whose fixed and already drawn params are ``drawn`` draws this dimension."""
        return all(key in drawn and drawn[key] in wanted for key, wanted in self.when.items())


class FloatRange(_Dimension):
    """A number drawn from [low, high], uniformly or on a log scale."""

    low: float
    high: float
    log: bool = False

    def values(self) -> tuple[float, ...]:
        return (self.low, self.high)


class IntRange(_Dimension):
    """An integer drawn from [low, high]; both ends given as integers."""

    low: int
    high: int
    log: bool = False

    def values(self) -> tuple[int, ...]:
        return (self.low, self.high)


class Choices(_Dimension):
    """One of a list of values."""

    choices: tuple[Value, ...] = Field(min_length=1)

    def values(self) -> tuple[Value, ...]:
        return self.choices


def _dimension_kind(raw: Any) -> str:
    """Which kind of dimension ``raw`` is meant to be, so a mistake is reported against that kind alone:
    ``choices`` when it has them, ``int`` when both ends are integers, else ``float``."""
    if not isinstance(raw, Mapping):
        return "choices" if isinstance(raw, Choices) else "int" if isinstance(raw, IntRange) else "float"
    if "choices" in raw:
        return "choices"
    ends = [raw.get("low"), raw.get("high")]
    return "int" if all(isinstance(end, int) and not isinstance(end, bool) for end in ends) else "float"


Dimension = Annotated[Annotated[IntRange, Tag("int")] | Annotated[FloatRange, Tag("float")]
                      | Annotated[Choices, Tag("choices")], Discriminator(_dimension_kind)]
