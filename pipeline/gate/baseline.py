"""The gate's inputs: metrics files and their model kinds, the baseline as a file or as committed at a git revision."""

import json
import math
import subprocess
from collections.abc import Sequence
from pathlib import Path

from pipeline.core.errors import PipelineError, clipped
from pipeline.core.model_kind import ModelKind, parse_kind
from pipeline.core.paths import MODEL_KIND_FILE


class CannotCompareError(PipelineError):
    """The new metrics or the baseline cannot be read, so there is no verdict at all."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"cannot compare: {reason}")


def parse_metrics(text: str, source: str) -> dict[str, float]:
    """A flat JSON object of numbers; ``NaN``/``Infinity`` are kept, ``null`` reads as NaN."""
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise CannotCompareError(f"{source} is not valid JSON ({error})") from None
    if not isinstance(raw, dict):
        raise CannotCompareError(f"{source} must hold a JSON object of metrics, not {type(raw).__name__}")
    return {name: _metric(name, value, source) for name, value in raw.items()}


def _metric(name: str, value: object, source: str) -> float:
    """One metric as a float: ``null`` is NaN, and JSON's ``1e400`` was already infinity; an integer beyond a
    float's range (``OverflowError`` in every later subtraction) or anything not a number is refused."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CannotCompareError(f"{source}: metric {clipped(repr(name))} is {clipped(repr(value))}, not a number")
    try:
        return float(value)
    except OverflowError:
        digits = math.ceil(value.bit_length() * math.log10(2))
        raise CannotCompareError(f"{source}: metric {clipped(repr(name))} is an integer of about {digits} digits, "
                                 "beyond the range of a float (1.8e308)") from None


def read_metrics_file(path: Path) -> dict[str, float]:
    """The metrics in ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise CannotCompareError(f"cannot read {path}: {error.strerror or error}") from None
    return parse_metrics(text, str(path))


def read_baseline(baseline: str, metrics: Path) -> tuple[str, dict[str, float]]:
    """``(label, metrics)`` of the baseline: the file ``baseline``, else ``metrics`` at revision ``baseline``."""
    if Path(baseline).is_file():
        return baseline, read_metrics_file(Path(baseline))
    label, text = committed_file(baseline, metrics)
    return label, parse_metrics(text, label)


def read_model_kind(path: Path | None) -> ModelKind:
    """The kind named in the ``model.json`` at ``path``; ``vae`` when there is none (metrics from before it)."""
    if path is None or not Path(path).is_file():
        return parse_kind(None, "")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise CannotCompareError(f"cannot read {path}: {error.strerror or error}") from None
    return parse_kind(text, str(path))


def baseline_model_kind(baseline: str, model_kind: Path, baseline_model_kind: Path | None) -> ModelKind:
    """The baseline's model kind: for a baseline file, from ``baseline_model_kind`` or else the ``model.json``
    beside that file, as the evaluate stage leaves them; for a git revision, ``model_kind`` as committed there
    (``vae`` where the file is absent)."""
    if Path(baseline).is_file():
        return read_model_kind(baseline_model_kind or Path(baseline).with_name(MODEL_KIND_FILE.name))
    label, text = committed_file(baseline, model_kind, missing_ok=True)
    return parse_kind(text, label)


def committed_file(revision: str, path: Path, missing_ok: bool = False) -> tuple[str, str | None]:
    """``(label, text)`` of ``path`` as committed at ``revision`` in the git repository holding it.

    With ``missing_ok``, a path not committed there gives ``None`` as text instead of an error.
    """
    folder = Path(path).resolve().parent
    top = Path(_git(["rev-parse", "--show-toplevel"], folder,
                    f"{path} is not inside a git repository; pass --baseline FILE").strip()).resolve()
    relative = Path(path).resolve().relative_to(top).as_posix()
    _git(["rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], top,
         f"--baseline {revision!r} is neither a metrics file nor a git revision of {top}")
    label = f"{revision}:{relative}"
    if missing_ok and subprocess.run(["git", "cat-file", "-e", label], cwd=top, capture_output=True).returncode:
        return label, None
    text = _git(["show", label], top, f"no baseline: {relative} is not committed at {revision} "
                                      "(commit one, or pass --baseline FILE)")
    return label, text


def commit_of(revision: str, path: Path) -> str:
    """The full commit id that ``revision`` names now, in the git repository holding ``path``."""
    return _git(["rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], Path(path).resolve().parent,
                f"{revision!r} is not a git revision").strip()


def _git(args: Sequence[str], cwd: Path, failure: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as error:
        raise CannotCompareError(f"cannot run git ({error.strerror or error}); pass --baseline FILE") from None
    if done.returncode != 0:
        raise CannotCompareError(failure)
    return done.stdout
