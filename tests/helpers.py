"""What several test files share: the repository root, small synthetic images and digits, history without
timings, the ``pipeline`` imports of a source file, the PNG checks of the report, ``git``, free ports and a
local HTTP server, the system Chromium, and Markdown as GitHub reads it."""

import ast
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist"


def random_images(count: int, seed: int = 0) -> np.ndarray:
    """``count`` rows of 784 float32 pixels, uniform in [0, 1)."""
    return np.random.default_rng(seed).random((count, 784), dtype=np.float32)


def synthetic_digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ten binary prototypes with 5 % of pixels flipped: float32 rows (count, 784) in [0, 1] and uint8 labels."""
    rng = np.random.default_rng(seed)
    prototypes = np.random.default_rng(0).random((10, 784)) < 0.2
    labels = (np.arange(count) % 10).astype(np.uint8)
    flips = rng.random((count, 784)) < 0.05
    return (prototypes[labels] ^ flips).astype(np.float32), labels


def without_timing(history: Iterable[Mapping[str, float]]) -> list[dict[str, float]]:
    """Per-epoch logs less their wall-clock ``seconds``, which differ between otherwise identical runs."""
    return [{key: value for key, value in logs.items() if key != "seconds"} for logs in history]


def pipeline_imports(path: Path, top_level_only: bool = False) -> set[str]:
    """The ``pipeline`` modules a source file imports (at the top or, unless ``top_level_only``, inside
    functions), as dotted names.

    ``from pipeline.tracking import store`` names the module ``pipeline.tracking.store`` when that is a
    module, else the package ``pipeline.tracking``.
    """
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "pipeline"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pipeline":
            for alias in node.names:
                candidate = REPO_ROOT / Path(*node.module.split("."), alias.name)
                is_module = candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file()
                found.add(f"{node.module}.{alias.name}" if is_module else node.module)
    return found


def top_level_imports(path: Path) -> set[str]:
    """The top-level package names a source file imports at module level (not inside functions)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def assert_figures(out: Path, sizes: Mapping[str, tuple[float, float]]) -> None:
    """Each PNG ``name`` in ``out`` has exactly ``sizes[name]`` inches × the figures' DPI in pixels, and is not
    blank (its grey levels vary)."""
    from pipeline.reporting.figures import DPI

    for name, (width, height) in sizes.items():
        with Image.open(out / name) as picture:
            assert picture.size == (round(width * DPI), round(height * DPI)), name
            assert np.asarray(picture.convert("L"), dtype=float).std() > 5.0, name


# --- processes, ports and servers ---------------------------------------------------------------------

def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on once this returns."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def git(cwd: Path, *args: str) -> str:
    """``git ARGS`` in ``cwd`` with a test identity and no signing; its stdout. A failure fails the test with
    git's message."""
    done = subprocess.run(["git", "-c", "user.name=pytest", "-c", "user.email=pytest@example.invalid",
                           "-c", "commit.gpgsign=false", *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"git {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return done.stdout


class QuietHttpServer(http.server.ThreadingHTTPServer):
    """A local HTTP server for fault tests: clients that give up (timeouts, resets) are expected, not errors;
    ``release`` wakes handlers that wait on it; closing joins every handler thread."""

    daemon_threads = False
    block_on_close = True
    release: threading.Event

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


@contextmanager
def http_server(handler: Callable[..., http.server.BaseHTTPRequestHandler],
                **attributes: object) -> Iterator[QuietHttpServer]:
    """``handler`` served on a free 127.0.0.1 port in a thread, with ``attributes`` set on the server (the
    handler reads them as ``self.server.<name>``); on exit, waiting handlers are released and joined."""
    server = QuietHttpServer(("127.0.0.1", 0), handler)
    server.release = threading.Event()
    for name, value in attributes.items():
        setattr(server, name, value)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def chromium_path() -> str:
    """The system Chromium; skip where it is missing, but fail in CI, where .ci/run installs it."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


# --- Markdown as GitHub reads it -----------------------------------------------------------------------------

def _plain(inline: object) -> str:
    """An inline token's rendered text: plain text as is, a code span as ```code```, any other markup as
    ``<type>``, so that a value that turned into a link, emphasis or HTML cannot pass for its text."""
    parts = []
    for child in inline.children or []:
        if child.type in {"text", "softbreak"}:
            parts.append(child.content if child.type == "text" else "\n")
        elif child.type == "code_inline":
            parts.append(f"`{child.content}`")
        else:
            parts.append(f"<{child.type}>")
    return "".join(parts)


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Each GitHub-flavoured Markdown table in ``text`` as rows of cell texts (header row first)."""
    from markdown_it import MarkdownIt

    tables: list[list[list[str]]] = []
    for token in MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(text):
        if token.type == "table_open":
            tables.append([])
        elif token.type == "tr_open":
            tables[-1].append([])
        elif token.type == "inline" and tables and token.level > 2 and tables[-1]:
            tables[-1][-1].append(_plain(token))
        elif token.type == "table_close":
            tables[-1] = [row for row in tables[-1] if row]
    return tables


def markdown_lines(text: str) -> list[str]:
    """The rendered text of each paragraph and heading outside tables, as ``_plain`` writes it."""
    from markdown_it import MarkdownIt

    return [_plain(token) for token in MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(text)
            if token.type == "inline" and token.level == 1]
