"""Text put into the gate's Markdown (the CI summary, the promoted version's description) shows as it was written.

In GitHub-flavoured Markdown a ``|`` in a value starts a new table cell, a newline ends the row, and
`` ` ``, ``*``, ``_``, ``~``, ``](``, ``<`` and ``&`` start code, emphasis, strike-through, links, HTML or
entities. ``text`` puts a backslash before each of those (CommonMark allows one before any ASCII
punctuation, and GFM tables before ``|``), leaving an ``_`` between two letters or digits alone as
Markdown does; ``code`` wraps a label in a code span whose fence it cannot close. Both put the value on one
line and clip it as error lines do (``pipeline.core.errors.clipped``: a newline shows as ``\\n``).
"""

import re

from pipeline.core.errors import clipped

ACTIVE = re.compile(r"[\\`*~<&|]|\](?=\()|(?<![^\W_])_|_(?![^\W_])")
"""Characters that start Markdown syntax inside a table cell: ``_`` only where it is not inside a word, ``]`` only
before ``(`` (an inline link; the gate writes no link definitions, so ``[0, 1]`` stays as it is)."""


def text(value: str) -> str:
    """``value`` for a table cell or a sentence: renders as ``value`` (clipped, control characters escaped)."""
    return ACTIVE.sub(lambda found: "\\" + found.group(), clipped(value))


def code(value: str) -> str:
    """``value`` as an inline code span, outside tables: renders as ``value`` in code font."""
    shown = clipped(value)
    fence = "`" * (max((len(run) for run in re.findall("`+", shown)), default=0) + 1)
    padding = " " if shown.startswith("`") or shown.endswith("`") else ""
    return f"{fence}{padding}{shown}{padding}{fence}"

