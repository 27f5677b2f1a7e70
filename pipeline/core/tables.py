"""The one way a command shows a table: printed for the terminal, and written as CSV or Markdown on request.

``compare`` and ``tune show`` both call it, so ``--csv`` and ``--markdown`` mean the same everywhere.
"""

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core import atomic_files

if TYPE_CHECKING:
    import pandas as pd


def add_table_options(parser: argparse.ArgumentParser) -> None:
    """``--csv FILE`` and ``--markdown FILE``."""
    parser.add_argument("--csv", type=Path, help="also write the table as CSV")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown")


def show_table(table: "pd.DataFrame", csv: Path | None = None, markdown: Path | None = None) -> None:
    """Print ``table`` without its index; write it atomically as CSV and Markdown where a path is given."""
    print(table.to_string(index=False))
    if csv:
        atomic_files.write_text(csv, table.to_csv(index=False))
    if markdown:
        atomic_files.write_text(markdown, table.to_markdown(index=False) + "\n")
