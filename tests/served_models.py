"""Logged models in a SQLite store, loaded and served where the project's code cannot be imported, and the
requests they must answer or refuse."""

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import free_port

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


