"""What several test files share: the repository root, small synthetic digits, history without timings,
the ``pipeline`` imports of a source file, the PNG checks of the report, and logged models in a SQLite
store served where the project's code cannot be imported."""

import ast
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist"


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


# --- logged models, loaded and served without the project's code ------------------------------------------

TOLERANCE = 1e-5
SERVER_START_LIMIT_S = 240
SERVER_LIFETIME_S = 420
BLOCKER = '''
import importlib.abc, os, sys

class NoPipeline(importlib.abc.MetaPathFinder):
    """Refuse the project's package, and note each attempt where the test can see it."""
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "pipeline":
            with open(os.environ["BLOCKED_IMPORTS"], "a") as log:
                log.write(name + "\\n")
            raise ImportError(f"{name} is blocked: the model must load without the project's code")
        return None

sys.meta_path.insert(0, NoPipeline())
'''


@contextmanager
def logged_in_store(root: Path, experiment: str, encoder: object, decoder: object, examples: Mapping[str, object],
                    step: int, metrics: Mapping[str, float] | None = None) -> Iterator[dict]:
    """Log ``encoder`` and ``decoder`` (and their VAE) in one run of a new SQLite store in ``root``, with
    ``metrics`` at ``step``; yield ``uri``, ``root``, ``run_id`` and ``model_ids``. MLflow points at that
    store inside the block, at the previous one after it."""
    import mlflow

    from pipeline.tracking import logged_models
    from pipeline.tracking.run_lifecycle import ensure_experiment

    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(experiment_id=ensure_experiment(experiment, root)) as run:
            if metrics:
                mlflow.log_metrics(dict(metrics), step=step)
            model_ids = logged_models.log_vae_models(encoder, decoder, examples, step=step)
        yield {"uri": uri, "root": root, "run_id": run.info.run_id, "model_ids": model_ids}
    finally:
        mlflow.set_tracking_uri(previous)


def child_environment(trained: dict, folder: Path) -> dict[str, str]:
    """A Python environment in which ``import pipeline`` fails and is recorded, the tool folder first on PATH."""
    (folder / "blocker").mkdir(exist_ok=True)
    (folder / "blocker" / "sitecustomize.py").write_text(textwrap.dedent(BLOCKER), encoding="utf-8")
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "KERAS_"))}
    environment.update(PYTHONPATH=str(folder / "blocker"), MLFLOW_TRACKING_URI=trained["uri"],
                       BLOCKED_IMPORTS=str(folder / "blocked.txt"), TF_CPP_MIN_LOG_LEVEL="2",
                       PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return environment


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(port: int, body: dict) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


def post_text(port: int, body: str) -> tuple[int, dict]:
    """POST a JSON text as written (``NaN``, ``Infinity`` and ``1e39`` included); return the HTTP status and the
    answer, parsed as strict JSON (a bare ``NaN`` or ``Infinity`` in it fails the test, as ``JSON.parse`` would)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            status, text = answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    return status, strict_json(text)


def strict_json(text: str) -> dict:
    """``text`` parsed as RFC 8259 JSON, which has no NaN or Infinity: Python's json accepts them, browsers do not."""
    def refuse(constant: str) -> None:
        raise AssertionError(f"not JSON: a bare {constant} in {text[:200]!r}")

    return json.loads(text, parse_constant=refuse)


NON_FINITE_BODIES = {
    "NaN": "NaN", "null": "null", "Infinity": "Infinity", "-Infinity": "-Infinity",
    "beyond-float32": "1e39", "beyond-float32-negative": "-1e39",
}
"""A JSON value for one input element that the served models must refuse: none is a finite float32."""


def request_with(width: int, value: str, rows: int = 2, name: str | None = None, extra: str = "") -> str:
    """A JSON request of ``rows`` rows of ``width`` zeros with the last row's second value replaced by ``value``
    (a named input ``name`` when given, with ``extra`` JSON members beside it)."""
    table = [["0.0"] * width for _ in range(rows)]
    table[-1][1] = value
    inputs = "[" + ", ".join("[" + ", ".join(row) + "]" for row in table) + "]"
    return f'{{"inputs": {{"{name}": {inputs}{extra}}}}}' if name else f'{{"inputs": {inputs}}}'


@contextmanager
def served(uri: str, environment: dict[str, str], folder: Path) -> Iterator[int]:
    """``mlflow models serve`` on a free local port, ended (with its workers) when the caller is done."""
    port = free_port()
    command = ["timeout", str(SERVER_LIFETIME_S), sys.executable, "-m", "mlflow", "models", "serve", "-m", uri,
               "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    log = open(folder / f"serve-{port}.log", "w")  # noqa: SIM115  (closed below, after the server ends)
    server = subprocess.Popen(command, cwd=folder, env=environment, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_START_LIMIT_S
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5):
                    break
            except (urllib.error.URLError, OSError):
                if server.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail(f"mlflow models serve did not start: {(folder / log.name).read_text()[-3000:]}")
                time.sleep(1)
        yield port
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)
        log.close()


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
