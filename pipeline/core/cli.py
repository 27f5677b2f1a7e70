"""What every stage's ``main`` shares: argument parsing and turning failures into one clear line."""

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core import interrupts
from pipeline.core.dvc_outputs import restore_hint
from pipeline.core.errors import PipelineError
from pipeline.core.paths import MODEL_FILE, PARAMS_FILE, PREPARED_DIR, RUN_FILE
from pipeline.core.quiet import VERBOSE_ENV, make_verbose

if TYPE_CHECKING:
    from tqdm import tqdm

EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130


def stage_parser(stage: str, description: str) -> argparse.ArgumentParser:
    """An argument parser for ``python -m pipeline <stage>`` that already takes ``--params`` and ``-v``."""
    parser = argparse.ArgumentParser(prog=f"python -m pipeline {stage}", description=description)
    parser.add_argument(
        "--params", type=Path, default=PARAMS_FILE, help=f"params file (default: {PARAMS_FILE})"
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help=f"show TensorFlow's and MLflow's own output too (or set {VERBOSE_ENV}=1)")
    return parser


def show_progress(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether to report progress: only for a person watching a terminal, never in CI."""
    return sys.stderr.isatty() and not environ.get("CI")


def progress_bar(total: int, description: str, unit: str) -> "tqdm":
    """A tqdm bar on stderr, shown only where ``show_progress`` says a person is watching."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit=unit, file=sys.stderr, disable=not show_progress(),
                leave=False, dynamic_ncols=True)


def add_model_paths(parser: argparse.ArgumentParser) -> None:
    """The paths that train writes and evaluate and report read: prepared data, model, run reference."""
    parser.add_argument("--prepared", type=Path, default=PREPARED_DIR, help="folder of the train/val/test .npz")
    parser.add_argument("--model", type=Path, default=MODEL_FILE, help="the .keras model")
    parser.add_argument("--run", type=Path, default=RUN_FILE, help="the JSON naming the MLflow training run")


def os_error_line(error: OSError) -> str:
    """``path: cause`` (``path -> other: cause`` for a move), or the cause alone when no path is known."""
    cause = error.strerror or str(error) or type(error).__name__
    if error.filename is None:
        return cause
    other = f" -> {error.filename2}" if error.filename2 is not None else ""
    return f"{error.filename}{other}: {cause}"


def run_stage(stage: str, body: Callable[[argparse.Namespace], None], parser: argparse.ArgumentParser,
              argv: Sequence[str] | None) -> int:
    """Parse ``argv``, run ``body``; report a ``PipelineError``, an ``OSError`` on an input or output
    (disk full, read-only, permission denied, not a directory, ...) or Ctrl-C as one line and an exit code.

    Run by DVC, a failed stage has lost its outputs (DVC deletes them first): a second line says how to
    restore them (``pipeline.core.dvc_outputs``)."""
    args = parser.parse_args(argv)
    if args.verbose:
        make_verbose()
    # A shell that starts a job in the background ignores SIGINT in it; a stage must still stop cleanly.
    previous = interrupts.install()
    try:
        body(args)
    except PipelineError as error:
        _failed(stage, f"error: {error}")
        return EXIT_FAILURE
    except OSError as error:
        _failed(stage, f"error: {os_error_line(error)}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        _failed(stage, "interrupted; no partial output was kept")
        return EXIT_INTERRUPTED
    finally:
        interrupts.restore(previous)
    return 0


def _failed(stage: str, message: str) -> None:
    """Print the failure; where DVC ran the stage, a second line says how to restore the outputs DVC deleted."""
    print(f"{stage}: {message}", file=sys.stderr)
    hint = restore_hint(stage, Path.cwd())  # DVC runs each stage at the root of the copy it works in
    if hint:
        print(f"{stage}: {hint}", file=sys.stderr)
