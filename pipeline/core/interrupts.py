"""Ctrl-C and SIGTERM as ``KeyboardInterrupt``, held back while a store write must not be cut.

Blocking the signals with a thread mask is not enough: TensorFlow's threads receive them and
Python still runs the handler in the main thread. So the handler itself waits while a section
is held and raises when the section ends.
"""

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None
"""A signal's disposition as ``signal.signal`` takes and returns it."""
_held_sections = 0
_pending = False


def interrupt(signum: int, frame: object) -> None:
    """Signal handler: raise ``KeyboardInterrupt`` now, or when the held section ends."""
    global _pending
    if _held_sections:
        _pending = True
        return
    raise KeyboardInterrupt


@contextmanager
def held() -> Iterator[None]:
    """Delay an interrupt that arrives inside the block until the block is done."""
    global _held_sections, _pending
    _held_sections += 1
    try:
        yield
    finally:
        _held_sections -= 1
        if not _held_sections and _pending:
            _pending = False
            raise KeyboardInterrupt


def install() -> dict[int, Handler]:
    """Route SIGINT and SIGTERM to ``interrupt``; return the handlers they had."""
    return {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}


def restore(previous: dict[int, Handler]) -> None:
    """Put back the handlers ``install`` replaced."""
    for signum, handler in previous.items():
        signal.signal(signum, handler)
