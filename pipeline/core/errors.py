"""The pipeline's expected failures: each carries one message a user can act on."""

import re
from pathlib import Path

SHOWN_CHARS = 120
"""The most characters of one value an error line shows: a value can be a 1 MB string or an expanded alias."""
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class PipelineError(Exception):
    """A failure caused by input, data or environment, reported as one clear line, no traceback."""


def clipped(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` on one line (control characters as escapes, a newline as ``\\n``), cut to ``limit`` characters
    with ``…`` and the full length where it was cut."""
    text = CONTROL.sub(lambda found: found.group().encode("unicode_escape").decode("ascii"), text)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def require_output(path: Path, stage: str, error: type[PipelineError] = PipelineError) -> None:
    """Raise ``error`` unless ``path``, an output of the DVC stage ``stage``, is a file: the one line that names the
    missing file and the stage to run first."""
    if not Path(path).is_file():
        raise error(f"{path} not found; run the {stage} stage first")
