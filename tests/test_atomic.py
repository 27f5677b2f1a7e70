"""Atomic writes: a reader sees the old file or the complete new one, whatever happens to the writer."""

import json
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipeline.core.atomic_files import atomic_path, write_bytes, write_json, write_text

OLD = b"old, complete content\n"


def _old_target(tmp_path: Path, name: str = "metrics.json") -> Path:
    target = tmp_path / name
    target.write_bytes(OLD)
    return target


def test_success_replaces_the_target_and_leaves_only_it(tmp_path: Path) -> None:
    target = _old_target(tmp_path)
    with atomic_path(target) as temporary:
        temporary.write_bytes(b"new")
        assert target.read_bytes() == OLD
    assert target.read_bytes() == b"new"
    assert [path.name for path in tmp_path.iterdir()] == [target.name]


def test_missing_parent_folders_are_created(tmp_path: Path) -> None:
    write_bytes(tmp_path / "a" / "b" / "model.keras", b"x")
    assert (tmp_path / "a" / "b" / "model.keras").read_bytes() == b"x"


@pytest.mark.parametrize("name", ["vae.keras", "train.npz", "metrics.json", "archive.tar.gz", "README"])
def test_temporary_is_a_hidden_sibling_that_keeps_the_suffix(tmp_path: Path, name: str) -> None:
    target = tmp_path / name
    with atomic_path(target) as temporary:
        assert temporary.parent == target.parent
        assert re.fullmatch(rf"\.{re.escape(target.stem)}\.tmp-[0-9a-f]{{8}}{re.escape(target.suffix)}", temporary.name)
        assert not temporary.exists()
        temporary.write_bytes(b"x")


@pytest.mark.parametrize("error", [ValueError, OSError, KeyboardInterrupt])
def test_failure_inside_the_block_keeps_the_old_target_and_removes_the_temporary(
    tmp_path: Path, error: type[BaseException]
) -> None:
    target = _old_target(tmp_path)
    with pytest.raises(error), atomic_path(target) as temporary:
        temporary.write_bytes(b"half of the new")
        raise error
    assert target.read_bytes() == OLD
    assert [path.name for path in tmp_path.iterdir()] == [target.name]


def test_failure_with_no_old_target_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "model.keras") as temporary:
        temporary.write_bytes(b"partial")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_block_that_writes_nothing_fails_and_keeps_the_old_target(tmp_path: Path) -> None:
    target = _old_target(tmp_path)
    with pytest.raises(FileNotFoundError), atomic_path(target):
        pass
    assert target.read_bytes() == OLD


def test_write_helpers_round_trip(tmp_path: Path) -> None:
    write_text(tmp_path / "a.txt", "ünïcode\n")
    write_json(tmp_path / "b.json", {"z": 1, "a": [1.5]})
    assert (tmp_path / "a.txt").read_bytes() == "ünïcode\n".encode()
    assert (tmp_path / "b.json").read_text() == '{\n  "a": [\n    1.5\n  ],\n  "z": 1\n}\n'
    assert json.loads((tmp_path / "b.json").read_text()) == {"a": [1.5], "z": 1}


def test_concurrent_reader_never_sees_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    size = 1 << 18
    write_bytes(target, bytes(size))
    seen: set[tuple[int, int]] = set()
    done = threading.Event()

    def read() -> None:
        while True:
            data = target.read_bytes()
            seen.add((len(data), len(set(data))))
            if done.is_set():
                return

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for version in range(1, 60):
            write_bytes(target, bytes([version]) * size)
    finally:
        done.set()
        reader.join(timeout=10)
    assert seen and seen <= {(size, 1)}


WRITER = """
import sys, time
from pathlib import Path
from pipeline.core.atomic_files import atomic_path
with atomic_path(Path(sys.argv[1])) as temporary:
    with open(temporary, "wb") as stream:
        stream.write(b"new, but only partly written")
        stream.flush()
        print(temporary, flush=True)
        time.sleep(60)
"""


def test_writer_killed_with_sigkill_leaves_the_old_target_intact(tmp_path: Path) -> None:
    """SIGKILL runs no cleanup: the target is intact, and the one stray is the hidden temporary."""
    target = _old_target(tmp_path, "vae.keras")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        line = writer.stdout.readline().strip()  # type: ignore[union-attr]
        assert line, "the writer exited before writing its temporary file"
        temporary = Path(line)
        assert temporary.is_file()
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()  # type: ignore[union-attr]
    assert writer.returncode == -signal.SIGKILL
    assert target.read_bytes() == OLD
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([target.name, temporary.name])
    assert temporary.name.startswith(".vae.tmp-") and temporary.suffix == ".keras"
