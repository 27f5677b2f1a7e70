"""Atomic file writes: a reader sees the old file or the complete new one, never a part."""

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it onto ``target`` only if the block succeeds.

    The temporary name keeps the target's suffix, so writers that check it (``.keras``, ``.npz``)
    accept it. On any exception, ``KeyboardInterrupt`` included, the temporary file is removed.
    An ``OSError`` (disk full, read-only, ...) that names no file, or the temporary, is made to name
    ``target``, so the one line a stage prints says which output could not be written.
    """
    target = Path(target)
    temporary = target.with_name(f".{target.stem}.tmp-{uuid.uuid4().hex[:8]}{target.suffix}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        yield temporary
        os.replace(temporary, target)
    except OSError as error:
        if error.filename is None or str(error.filename) == str(temporary):
            error.filename, error.filename2 = str(target), None
        raise
    finally:
        with suppress(OSError):
            temporary.unlink(missing_ok=True)


def write_bytes(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as temporary:
        temporary.write_bytes(data)


def write_text(target: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    with atomic_path(target) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_json(target: Path, payload: Any) -> None:
    """Write ``payload`` as indented, key-sorted JSON to ``target`` atomically."""
    write_text(target, json.dumps(payload, indent=2, sort_keys=True) + "\n")
