"""The gate's inputs: metrics files and their model kinds, the baseline as a file or as committed at a git revision."""

from collections.abc import Sequence
from pathlib import Path

from pipeline.core.errors import PipelineError
from pipeline.core.git import GitError, git
from pipeline.core.metrics import parse_metrics, read_metrics_file
from pipeline.core.model_kind import ModelKind, parse_kind
from pipeline.core.paths import MODEL_KIND_FILE


class CannotCompareError(PipelineError):
    """The new metrics or the baseline cannot be read, so there is no verdict at all."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"cannot compare: {reason}")


def read_baseline(baseline: str, metrics: Path) -> tuple[str, dict[str, float]]:
    """``(label, metrics)`` of the baseline: the file ``baseline``, else ``metrics`` at revision ``baseline``."""
    if Path(baseline).is_file():
        return baseline, read_metrics_file(Path(baseline), CannotCompareError)
    label, text = committed_file(baseline, metrics)
    return label, parse_metrics(text, label, CannotCompareError)


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
    label, text = committed_file_if_any(baseline, model_kind)
    return parse_kind(text, label)


def committed_file(revision: str, path: Path) -> tuple[str, str]:
    """``(label, text)`` of ``path`` as committed at ``revision`` in the git repository holding it."""
    top, relative = _in_repository(revision, path)
    return f"{revision}:{relative}", _show(top, revision, relative)


def committed_file_if_any(revision: str, path: Path) -> tuple[str, str | None]:
    """``committed_file``, with ``None`` as text where ``path`` is not committed at ``revision``."""
    top, relative = _in_repository(revision, path)
    label = f"{revision}:{relative}"
    try:
        git(top, "cat-file", "-e", label)
    except GitError:
        return label, None
    return label, _show(top, revision, relative)


def _in_repository(revision: str, path: Path) -> tuple[Path, str]:
    """The top folder of the git repository holding ``path`` and the path within it, once ``revision`` is known
    to name a commit there."""
    folder = Path(path).resolve().parent
    top = Path(_git(["rev-parse", "--show-toplevel"], folder,
                    f"{path} is not inside a git repository; pass --baseline FILE").strip()).resolve()
    _git(["rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], top,
         f"--baseline {revision!r} is neither a metrics file nor a git revision of {top}")
    return top, Path(path).resolve().relative_to(top).as_posix()


def _show(top: Path, revision: str, relative: str) -> str:
    return _git(["show", f"{revision}:{relative}"], top, f"no baseline: {relative} is not committed at {revision} "
                                                         "(commit one, or pass --baseline FILE)")


def commit_of(revision: str, path: Path) -> str:
    """The full commit id that ``revision`` names now, in the git repository holding ``path``."""
    return _git(["rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], Path(path).resolve().parent,
                f"{revision!r} is not a git revision").strip()


def _git(args: Sequence[str], cwd: Path, failure: str) -> str:
    """git's output; ``CannotCompareError`` saying ``failure`` when it exits non-zero, or why it cannot run."""
    try:
        return git(cwd, *args)
    except GitError as error:
        reason = f"{error}; pass --baseline FILE" if error.returncode is None else failure
        raise CannotCompareError(reason) from None
