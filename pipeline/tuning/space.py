"""The search space in ``tune.yaml``: what a study varies, what it fixes, how it judges and prunes trials.

Every key is a param of params.yaml, and every end of a range and every choice is checked against that param's
own schema (``pipeline.core.params``), so a study is refused before its first trial with the dotted key
(``space.train.learning_rate``) and the reason. A study that would score trials on the test set is refused too:
``data.val_fraction`` must hold out a validation split for every trial.

A dimension may apply only ``when`` params drawn before it (with choices) or fixed hold given values
(``train.adam_beta_2: {low: 0.99, high: 0.9999, when: {train.optimizer: adam}}``): the params refuse a setting
that another choice would ignore, so a conditional space is how one study searches several optimizers or
schedules. A trial in which a condition fails does not draw the dimension and keeps params.yaml's value.
"""

import itertools
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from pipeline.core.param_sections import MAX_SEED
from pipeline.core.params import Params, ParamsError, lists_to_tuples, parse_params, read_yaml_file
from pipeline.core.strict_yaml import YamlError, load_yaml
from pipeline.tuning.dimensions import Choices, Dimension, StrictModel, Value

TUNE_FILE = Path("tune.yaml")
MAX_TRIALS = 100_000
"""More trials than a study on this pipeline could run in a year at one minute each on 2 cores."""
VALIDATION_FRACTION = "data.val_fraction"
"""The param that carves the validation split from the training images; 0 would validate on the test set."""




class PrunerSettings(StrictModel):
    kind: Literal["median", "none"] = "median"
    startup_trials: int = Field(default=5, ge=0, le=MAX_TRIALS)
    """Optuna's n_startup_trials: no pruning until this many trials are complete."""
    warmup_epochs: int = Field(default=1, ge=0)
    """No trial is pruned after fewer epochs than this."""


class TuneSettings(StrictModel):
    """A validated ``tune.yaml`` with ``--set`` overrides folded into ``fixed``."""

    objective: Literal["val_neg_elbo"] = "val_neg_elbo"
    trials: int = Field(default=30, ge=1, le=MAX_TRIALS)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    fixed: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, Dimension] = Field(min_length=1)
    pruner: PrunerSettings = PrunerSettings()

    def as_attrs(self) -> dict[str, Any]:
        """The settings as JSON-ready values: stored with the study, so every host runs the same space."""
        return json.loads(self.model_dump_json())


class TuneSettingsError(ParamsError):
    """tune.yaml, a ``--set`` or the study's stored settings hold something a study cannot run."""


def parse_overrides(assignments: Iterable[str]) -> dict[str, Any]:
    """``["train.epochs=1", ...]`` (the syntax of ``dvc exp run -S``, values read as YAML) as a mapping."""
    parsed = {}
    for assignment in assignments:
        key, separator, text = assignment.partition("=")
        if not separator or not key.strip():
            raise TuneSettingsError(f"--set {assignment!r}: expected key=value, e.g. train.epochs=1")
        try:
            parsed[key.strip()] = load_yaml(text) if text.strip() else None
        except YamlError as error:
            raise TuneSettingsError(f"--set {assignment!r}: the value is not YAML: {error}") from None
    return parsed


def load_settings(path: Path, params: Params, overrides: Mapping[str, Any] | None = None) -> TuneSettings:
    """Read ``path``, fold ``overrides`` into ``fixed`` and check the whole study against ``params``.

    Raises ``TuneSettingsError`` naming the dotted key for a bad file, unknown key, empty range, value out
    of a param's bounds or of the wrong type, and for a study that would score trials on the test set.
    """
    raw = read_yaml_file(path, TuneSettingsError)
    if not isinstance(raw, Mapping):
        raise TuneSettingsError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    raw = {**raw, "fixed": {**(raw.get("fixed") or {}), **(overrides or {})}}
    try:
        return checked(settings_from(raw), params)
    except TuneSettingsError as error:
        raise TuneSettingsError(f"{path}: {error}") from None


def settings_from(raw: Mapping[str, Any]) -> TuneSettings:
    """Validate the shape of the settings (not yet against params)."""
    try:
        return TuneSettings.model_validate(lists_to_tuples(raw))
    except ValidationError as error:
        problems = []
        for problem in error.errors():
            location = [str(part) for part in problem["loc"]]
            if location[:1] == ["space"] and len(location) > 2:  # pydantic names the union member; drop it
                location = location[:2] + location[3:]
            message = "unknown key" if problem["type"] == "extra_forbidden" else problem["msg"]
            problems.append(f"{'.'.join(location) or '(top level)'}: {message} (got {problem.get('input')!r})")
        raise TuneSettingsError("invalid tune settings:\n  " + "\n  ".join(dict.fromkeys(problems))) from None


def checked(settings: TuneSettings, params: Params) -> TuneSettings:
    """``settings`` once every key, range, choice and condition fits ``params``' schema and no trial can see the
    test set. Each value of a conditional dimension is checked in every combination of the values its
    conditions (and theirs) accept, so a study is refused here rather than failing trial after trial."""
    both = sorted(set(settings.fixed) & set(settings.space))
    if both:
        raise TuneSettingsError(f"space.{both[0]}: also fixed; a param is either searched or fixed")
    base = params.model_dump(mode="json")
    _parse(base, settings.fixed, "fixed")
    for key, dimension in sorted(settings.space.items(), key=lambda item: not item[1].when):  # dependents first:
        if not isinstance(dimension, Choices):  # a bad value of theirs is named by their own key
            if dimension.low >= dimension.high:
                raise TuneSettingsError(f"space.{key}: empty range, low {dimension.low} is not below high "
                                        f"{dimension.high}")
            if dimension.log and dimension.low <= 0:
                raise TuneSettingsError(f"space.{key}: a log scale needs low > 0, got {dimension.low}")
        requirements = _requirements(settings, key, base)
        for value in dimension.values():
            for context in itertools.product(*requirements.values()):
                drawn = {**settings.fixed, **dict(zip(requirements, context, strict=True)), key: value}
                _parse(base, _with_dependents(settings, drawn), f"space.{key}", value)
    _refuse_test_set(settings, params)
    return settings


def _requirements(settings: TuneSettings, key: str, base: dict[str, Any]) -> dict[str, tuple[Value, ...]]:
    """What a trial must have drawn for dimension ``key`` to apply: each searched param its conditions name,
    directly or through the conditions of those, with the values that meet all of them.

    Raises ``TuneSettingsError`` naming ``space.<key>.when.<param>`` for a condition on an unknown param, on
    one neither drawn with choices before ``key`` nor fixed, and for a value it can never hold.
    """
    order = list(settings.space)
    needed: dict[str, tuple[Value, ...]] = {}
    for name, wanted in settings.space[key].when.items():
        where = f"space.{key}.when.{name}"
        condition = settings.space.get(name)
        if name == key:
            raise TuneSettingsError(f"{where}: a dimension cannot depend on itself")
        if condition is None:
            _fixed_condition(settings, name, wanted, where, base)
            continue
        if not isinstance(condition, Choices):
            raise TuneSettingsError(f"{where}: {name} is searched over a range; a condition tests a param "
                                    "searched with choices, or a fixed one")
        if order.index(name) > order.index(key):
            raise TuneSettingsError(f"{where}: {name} is listed after {key}; list it first (a trial draws the "
                                    "space in order)")
        impossible = [value for value in wanted if value not in condition.choices]
        if impossible:
            raise TuneSettingsError(f"{where}: {impossible[0]!r} is not one of its choices "
                                    f"{list(condition.choices)}, so the condition can never hold")
        for required, values in {**_requirements(settings, name, base), name: wanted}.items():
            met = tuple(value for value in needed.get(required, values) if value in values)
            if not met:
                raise TuneSettingsError(f"{where}: never met: it needs {required} in {list(needed[required])} "
                                        f"and in {list(values)}")
            needed[required] = met
    return needed


def _with_dependents(settings: TuneSettings, drawn: dict[str, Any]) -> dict[str, Any]:
    """``drawn`` with the first value of each conditional dimension it makes apply: a choice such as an
    exponential schedule is only valid together with the decay (``lr_final_fraction`` > 0) it brings in."""
    for key, dimension in settings.space.items():
        if key not in drawn and dimension.when and dimension.applies(drawn):
            drawn = {**drawn, key: dimension.values()[0]}
    return drawn


def _fixed_condition(settings: TuneSettings, name: str, wanted: tuple[Value, ...], where: str,
                     base: dict[str, Any]) -> None:
    """A condition on a param the space does not search: it must be a fixed param whose value it accepts."""
    for value in wanted:
        _parse(base, {name: value}, where, value)  # an unknown key or a value out of the param's bounds
    if name not in settings.fixed:
        raise TuneSettingsError(f"{where}: {name} is neither searched with choices nor fixed in this study, so "
                                "nothing decides whether the condition holds")
    if settings.fixed[name] not in wanted:
        raise TuneSettingsError(f"{where}: never met: {name} is fixed at {settings.fixed[name]!r}; drop the "
                                "dimension or the condition")


def _refuse_test_set(settings: TuneSettings, params: Params) -> None:
    """Trials validate on ``data.val_fraction`` of the training images; at 0 the train stage would use test."""
    dimension = settings.space.get(VALIDATION_FRACTION)
    fractions = dimension.values() if dimension else (settings.fixed.get(VALIDATION_FRACTION,
                                                                          params.data.val_fraction),)
    lowest = min(fractions, key=float)  # each already parsed as data.val_fraction, so a number
    if float(lowest) <= 0:
        where = f"space.{VALIDATION_FRACTION}" if dimension else f"fixed.{VALIDATION_FRACTION}"
        raise TuneSettingsError(f"{where}: {lowest} would score trials on the test set; hold out a "
                                f"validation split from the training images, e.g. --set {VALIDATION_FRACTION}=0.1")


def _parse(base: dict[str, Any], assignments: Mapping[str, Any], where: str, value: Any = None) -> Params:
    """``base`` with the dotted ``assignments`` applied, validated as params; errors name ``where``."""
    raw = json.loads(json.dumps(base))
    for key, assigned in assignments.items():
        *sections, leaf = key.split(".")
        node = raw
        for section in sections:
            node = node.setdefault(section, {}) if isinstance(node, dict) else node
        if not isinstance(node, dict) or not sections:
            raise TuneSettingsError(f"{where if where != 'fixed' else f'fixed.{key}'}: {key!r} is not a param "
                                    "of params.yaml (section.key)")
        node[leaf] = assigned
    try:
        return parse_params(raw)
    except ParamsError as error:
        detail = str(error).removeprefix("invalid params:\n").strip()
        shown = f" value {value!r}:" if value is not None else ""
        raise TuneSettingsError(f"{where}:{shown} {detail}") from None


def trial_params(params: Params, settings: TuneSettings, point: Mapping[str, Any]) -> Params:
    """The params one trial trains with: ``params`` with the fixed settings and the sampled ``point``."""
    return _parse(params.model_dump(mode="json"), {**settings.fixed, **point}, "trial")


def cli_value(value: Any) -> str:
    """``value`` as ``dvc exp run -S`` reads it back (YAML 1.2): ``true``, ``0.00123``, ``adam``."""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return json.dumps(value) if isinstance(value, bool) or value is None else str(value)

