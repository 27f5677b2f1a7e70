"""The pipeline's expected failures: each carries one message a user can act on."""

SHOWN_CHARS = 120
"""The most characters of one value an error line shows: a value can be a 1 MB string or an expanded alias."""


class PipelineError(Exception):
    """A failure caused by input, data or environment, reported as one clear line, no traceback."""


def clipped(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with ``…`` and the full length where it was cut."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"
