"""``python -m pipeline <command>``: one entry point for every stage and tool.

Each command's module is imported only when it runs, so ``--help`` and the data stages
start without loading TensorFlow.
"""

import importlib
import sys
from collections.abc import Sequence

COMMANDS: dict[str, str] = {
    "download": "fetch and verify the dataset's IDX files",
    "prepare": "parse, scale and split the dataset",
    "train": "train the VAE and track the run in MLflow",
    "classifier": "train the CNN whose features score the VAE's samples",
    "evaluate": "compute test-set ELBO, likelihood, latent statistics and sample quality",
    "report": "draw the figures and the one-page HTML report",
    "check": "compare metrics against the committed baseline (CI gate)",
    "compare": "list tracked MLflow runs side by side",
    "recipe": "list the named training recipes, or apply one to params.yaml",
    "tune": "hyperparameter studies: Optuna decides, DVC runs each trial, MLflow records",
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {summary}" for name, summary in COMMANDS.items())
    return f"usage: python -m pipeline <command> [options]\n\ncommands:\n{rows}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to ``pipeline.<command>.main`` with the remaining arguments."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(_usage(), end="")
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"unknown command {command!r}\n\n{_usage()}", end="", file=sys.stderr)
        return 2
    module = importlib.import_module(f"pipeline.{command}")
    return module.main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
