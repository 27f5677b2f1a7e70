"""The one way a command shows a table: printed for the terminal, and written as CSV or Markdown on request.

``compare`` and ``tune show`` both call it, so ``--csv`` and ``--markdown`` mean the same everywhere.
"""

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core import atomic_files

if TYPE_CHECKING:
    import pandas as pd


def add_table_options(parser: argparse.ArgumentParser) -> None:
    """``--csv FILE`` and ``--markdown FILE``."""
    parser.add_argument("--csv", type=Path, help="also write the table as CSV")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown")


Render = Callable[["pd.DataFrame"], str]
Layout = Callable[["pd.DataFrame", Render, str], str]
"""``layout(table, render, heading)``: the text of ``table``, its parts drawn by ``render``, under headings that
start with ``heading`` (``"### "`` in Markdown, ``""`` in the terminal)."""


def whole(table: "pd.DataFrame", render: Render, heading: str) -> str:
    """The table in one piece, without headings."""
    return render(table) + "\n"


def show_table(table: "pd.DataFrame", csv: Path | None = None, markdown: Path | None = None,
               layout: Layout = whole) -> None:
    """Print ``table`` without its index; write it atomically as CSV and Markdown where a path is given.

    ``layout`` may split the printed and Markdown table into headed parts; the CSV stays one table.
    """
    print(layout(table, lambda part: part.to_string(index=False), ""), end="")
    if csv:
        atomic_files.write_text(csv, table.to_csv(index=False))
    if markdown:
        atomic_files.write_text(markdown, layout(table, lambda part: part.to_markdown(index=False), "### "))
