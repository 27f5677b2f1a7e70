"""What every stage's ``main`` shares: argument parsing and turning failures into one clear line."""

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pipeline.core import interrupts
from pipeline.core.errors import PipelineError
from pipeline.core.paths import MODEL_FILE, PARAMS_FILE, PREPARED_DIR, RUN_FILE

EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130


def stage_parser(stage: str, description: str) -> argparse.ArgumentParser:
    """An argument parser for ``python -m pipeline.<stage>`` that already takes ``--params``."""
    parser = argparse.ArgumentParser(prog=f"python -m pipeline {stage}", description=description)
    parser.add_argument(
        "--params", type=Path, default=PARAMS_FILE, help=f"params file (default: {PARAMS_FILE})"
    )
    return parser


def show_progress(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether to report progress: only for a person watching a terminal, never in CI."""
    return sys.stderr.isatty() and not environ.get("CI")


def add_model_paths(parser: argparse.ArgumentParser) -> None:
    """The paths that train writes and evaluate and report read: prepared data, model, run reference."""
    parser.add_argument("--prepared", type=Path, default=PREPARED_DIR, help="folder of the train/val/test .npz")
    parser.add_argument("--model", type=Path, default=MODEL_FILE, help="the .keras model")
    parser.add_argument("--run", type=Path, default=RUN_FILE, help="the JSON naming the MLflow training run")


def run_stage(stage: str, body: Callable[[argparse.Namespace], None], parser: argparse.ArgumentParser,
              argv: Sequence[str] | None) -> int:
    """Parse ``argv``, run ``body``; report a ``PipelineError`` or Ctrl-C as one line and an exit code."""
    args = parser.parse_args(argv)
    # A shell that starts a job in the background ignores SIGINT in it; a stage must still stop cleanly.
    previous = interrupts.install()
    try:
        body(args)
    except PipelineError as error:
        print(f"{stage}: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"{stage}: interrupted; no partial output was kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        interrupts.restore(previous)
    return 0
