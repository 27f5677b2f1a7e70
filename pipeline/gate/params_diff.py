"""Which params differ from the baseline's, so a reader of the gate sees why metrics moved.

Like ``dvc params diff``, the files are compared as written (read with the params loader, so ``1e-3``
and ``0.001`` are the same value): a key present on one side only is shown with ``n/a`` on the other.
The baseline's params are ``params.yaml`` at the baseline's git revision, or a file given for a
baseline that is a file. Params that cannot be read make a note in the report, never a failure.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.errors import clipped
from pipeline.core.params import flatten
from pipeline.core.strict_yaml import YamlError, load_yaml
from pipeline.gate import markdown
from pipeline.gate.baseline import CannotCompareError, committed_file
from pipeline.gate.comparison import ABSENT

_MISSING = object()


@dataclass(frozen=True)
class ParamsDiff:
    """``changed``: dotted key → (baseline value, new value), ``None`` where absent; or why nothing was compared."""

    baseline_label: str | None
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    not_compared: str | None = None


def compare_params(baseline: str, params: Path, baseline_params: Path | None) -> ParamsDiff:
    """The params of ``params`` against those of the baseline: ``baseline_params`` if given, else, when
    ``baseline`` is a git revision (not a file), ``params`` as committed there."""
    try:
        if baseline_params is not None:
            label, old_text = str(baseline_params), _read(baseline_params)
        elif Path(baseline).is_file():
            return ParamsDiff(None, not_compared="the baseline is a file; pass --baseline-params FILE to compare "
                                                 "them")
        else:
            label, old_text = _committed(baseline, params)
        old, new = _tree(old_text, label), _tree(_read(params), str(params))
    except _UnreadableError as error:
        return ParamsDiff(None, not_compared=str(error))
    keys = dict.fromkeys([*old, *new])
    changed = {key: (old.get(key), new.get(key)) for key in keys
               if old.get(key, _MISSING) != new.get(key, _MISSING)}
    return ParamsDiff(label, changed)


class _UnreadableError(Exception):
    """One side's params cannot be read; the message says which and why."""


def _read(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise _UnreadableError(f"cannot read {path}: {error.strerror or error}") from None


def _committed(revision: str, params: Path) -> tuple[str, str]:
    try:
        return committed_file(revision, params)
    except CannotCompareError:
        raise _UnreadableError(f"{Path(params).name} is not committed at {revision}") from None


def _tree(text: str, label: str) -> dict[str, Any]:
    try:
        raw = load_yaml(text)
    except YamlError as error:
        raise _UnreadableError(f"{label}: {error}") from None
    if raw is not None and not isinstance(raw, Mapping):
        raise _UnreadableError(f"{label} is not a mapping of sections")
    return dict(flatten(raw or {}))


def _shown(value: Any) -> str:
    """A value as ``dvc params diff`` shows it, escaped for a Markdown table cell."""
    if value is None:
        return ABSENT
    return markdown.text(value if isinstance(value, str) else json.dumps(value, default=str))


def format_params_diff(diff: ParamsDiff) -> str:
    """A Markdown paragraph and table of the params that differ, for the gate's report."""
    if diff.not_compared:
        return f"**Params:** not compared: {markdown.text(diff.not_compared)}.\n"
    label = markdown.code(str(diff.baseline_label))
    if not diff.changed:
        return f"**Params:** the same as at {label}.\n"
    rows = [f"| {markdown.text(str(key))} | {_shown(old)} | {_shown(new)} |"
            for key, (old, new) in sorted(diff.changed.items())]
    return "\n".join([f"**Params that differ from the baseline** ({label}):", "",
                      "| param | baseline | new |", "|:--|:--|:--|", *rows]) + "\n"


def changed_summary(diff: ParamsDiff) -> str:
    """`` (params changed: a, b)`` for the gate's one-line failure, or nothing."""
    return f" (params changed: {', '.join(clipped(key) for key in sorted(diff.changed))})" if diff.changed else ""
