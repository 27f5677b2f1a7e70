"""Load on the served decoder: `mlflow models serve` on 127.0.0.1, driven by 1, 4 and 16 concurrent clients.

By default the trained model (``models/vae.keras``) is logged by this checkout's ``log_vae_models``
into a new store in a temporary folder, and its decoder is served: what the code as it stands would
serve. ``--champion`` serves the registered champion decoder instead
(``models:/<check.registered_models.decoder>@champion``), ``--model-uri`` any model, each from a copy of
the project's store (its artifacts stay where the store says), so a training that writes the store
meanwhile neither slows nor locks it. The server runs with ``--env-manager local``, the project's own
environment, and stops at the end.

For every number of clients and every request size (latent points per request), the clients post for
``--seconds`` each, every client on its own keep-alive connection, one request after another. A request
is an error unless it answers HTTP 200 with strict JSON holding one 784-pixel row per point. Printed per
cell: requests per second, median and 99th-percentile latency, errors; then the resident memory of the
server's process tree (the server and its workers) after each cell, after a warm-up with every request
size, and the load average. Goal: 0 errors and no memory growth. With ``--repeats N`` each cell runs N
times and the medians are shown.

    uv run python benchmarks/serve_load.py [--champion | --model-uri URI] [--model models/vae.keras]
        [--clients 1 4 16] [--points 1 100] [--seconds 10] [--repeats 1] [--workers 1] [--markdown FILE]
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tabulate import tabulate

import pipeline  # noqa: F401  (MLflow's and TensorFlow's quiet log levels, before either is imported)

REPO_ROOT = Path(__file__).resolve().parent.parent
START_LIMIT_S = 300
LATENT_DIM = 2
PIXELS = 784


@dataclass(frozen=True)
class Cell:
    """One bounded run: so many clients posting requests of so many latent points."""

    clients: int
    points: int
    requests: int
    seconds: float
    latencies_ms: tuple[float, ...]
    errors: int

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def percentile(self, share: float) -> float:
        return float(np.percentile(self.latencies_ms, share)) if self.latencies_ms else float("nan")


def champion_uri(root: Path) -> str:
    """``models:/<the registered decoder>@champion``, by ``check.registered_models.decoder`` in params.yaml."""
    from pipeline.core.params import load_params

    return f"models:/{load_params(root / 'params.yaml').check.registered_models.decoder}@champion"


def log_decoder(model_file: Path, folder: Path) -> tuple[str, str]:
    """Log the trained model's views with this checkout's code into a new store in ``folder``; return the
    store's URI and the decoder's model URI."""
    import mlflow

    from pipeline.model.trained_vae import load_trained_vae
    from pipeline.tracking.logged_models import log_vae_models
    from pipeline.train import example_inputs

    trained = load_trained_vae(model_file)
    store = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(store)
    experiment = mlflow.create_experiment("serve-load", artifact_location=(folder / "artifacts").as_uri())
    examples = example_inputs(trained, np.zeros((5, PIXELS), np.float32), np.zeros(5, np.uint8))
    with mlflow.start_run(experiment_id=experiment):
        model_ids = log_vae_models(trained.encoder, trained.decoder, examples, step=0)
    return store, f"models:/{model_ids['decoder']}"


def label_count(model_uri: str, store: str) -> int:
    """The width of the decoder's ``labels`` input (a conditional VAE), 0 without one."""
    import mlflow

    mlflow.set_tracking_uri(store)
    inputs = mlflow.models.get_model_info(model_uri).signature.inputs.inputs
    return next((spec.shape[-1] for spec in inputs if spec.name == "labels"), 0)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def served(model_uri: str, store: str, workers: int, log: Path) -> Iterator[tuple[int, int]]:
    """``mlflow models serve`` on a free local port; yield the port and the server's pid; stop it after."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
               "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    environment = {**os.environ, "MLFLOW_TRACKING_URI": store, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(log, "w", encoding="utf-8") as output:
        server = subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            deadline = time.monotonic() + START_LIMIT_S
            while not _answers(port):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"mlflow models serve did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
            yield port, server.pid
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)


def _answers(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/ping")
        return connection.getresponse().status == 200
    except OSError:
        return False


def tree_rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and every descendant, from /proc (Linux), in MiB."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        pending.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def request_body(points: int, seed: int, classes: int = 0) -> bytes:
    """``points`` latent points drawn from the prior (with one-hot labels, cycling, for a conditional decoder)."""
    z = np.random.default_rng(seed).normal(size=(points, LATENT_DIM)).astype(np.float32)
    if not classes:
        return json.dumps({"inputs": z.tolist()}).encode()
    labels = np.eye(classes, dtype=np.float32)[np.arange(points) % classes]
    return json.dumps({"inputs": {"z": z.tolist(), "labels": labels.tolist()}}).encode()


def answer_is_right(status: int, text: bytes, points: int) -> bool:
    """HTTP 200, strict JSON (no bare NaN), one row of 784 pixels in [0, 1] per latent point."""
    if status != 200:
        return False
    def refuse(constant: str) -> None:
        raise ValueError(constant)
    try:
        pixels = np.asarray(json.loads(text, parse_constant=refuse)["predictions"], dtype=np.float64)
    except (ValueError, KeyError, TypeError):
        return False
    return pixels.shape == (points, PIXELS) and bool(np.all((pixels >= 0) & (pixels <= 1)))


def drive(port: int, clients: int, points: int, seconds: float, classes: int = 0) -> Cell:
    """``clients`` threads, each on its own connection, posting one request after another for ``seconds``."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = time.monotonic()
    stop = start + seconds

    def client(number: int) -> None:
        body = request_body(points, seed=number, classes=classes)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, failed = [], 0
        while time.monotonic() < stop:
            began = time.perf_counter()
            try:
                connection.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
                answer = connection.getresponse()
                right = answer_is_right(answer.status, answer.read(), points)
            except (OSError, http.client.HTTPException):
                right = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            mine.append((time.perf_counter() - began) * 1000)
            failed += not right
        connection.close()
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Cell(clients, points, len(latencies), time.monotonic() - start, tuple(latencies), errors[0])


def median_row(runs: Sequence[Cell], rss_mib: float) -> list[object]:
    """One table row: medians over the repeats of one cell, and the server's memory after them."""
    first = runs[0]
    return [first.clients, first.points, sum(run.requests for run in runs),
            f"{statistics.median(run.per_second for run in runs):.1f}",
            f"{statistics.median(run.percentile(50) for run in runs):.1f}",
            f"{statistics.median(run.percentile(99) for run in runs):.1f}",
            sum(run.errors for run in runs), f"{rss_mib:.0f}"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--champion", action="store_true", help="serve the registered champion decoder")
    chosen.add_argument("--model-uri", help="serve this model from a copy of --store")
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models" / "vae.keras",
                        help="the trained model whose decoder is logged and served by default")
    parser.add_argument("--store", type=Path, default=REPO_ROOT / "mlflow.db",
                        help="the SQLite store to copy for --champion and --model-uri")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--points", type=int, nargs="+", default=[1, 100], help="latent points per request")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each cell posts")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each cell; medians are shown")
    parser.add_argument("--workers", type=int, default=1, help="mlflow models serve --workers")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    needed = args.store if args.champion or args.model_uri else args.model
    if not needed.is_file():
        raise SystemExit(f"no {needed}: run `uv run dvc repro` first")

    with tempfile.TemporaryDirectory(prefix="serve-load-") as scratch:
        if args.champion or args.model_uri:
            store = f"sqlite:///{shutil.copyfile(args.store, Path(scratch) / 'mlflow.db')}"
            model_uri = args.model_uri or champion_uri(REPO_ROOT)
        else:
            store, model_uri = log_decoder(args.model, Path(scratch))
        classes = label_count(model_uri, store)
        load_before = os.getloadavg()
        with served(model_uri, store, args.workers, Path(scratch) / "serve.log") as (port, pid):
            for points in args.points:  # warm-up: the first request of each size traces the model's function
                drive(port, 1, points, 1.0, classes)
            rss_start = tree_rss_mib(pid)
            rows = []
            for points in args.points:
                for clients in args.clients:
                    runs = [drive(port, clients, points, args.seconds, classes) for _ in range(args.repeats)]
                    rows.append(median_row(runs, tree_rss_mib(pid)))
            rss_end = tree_rss_mib(pid)
        load_after = os.getloadavg()

    table = tabulate(rows, headers=["clients", "points/request", "requests", "requests/s", "median ms", "p99 ms",
                                    "errors", "server RSS MiB"], tablefmt="github")
    errors = sum(int(row[-2]) for row in rows)
    summary = (f"model {model_uri}, {args.workers} worker(s), {args.seconds:g} s per cell x {args.repeats}; "
               f"server tree RSS {rss_start:.0f} MiB after warm-up, {rss_end:.0f} MiB at the end "
               f"({rss_end - rss_start:+.0f} MiB); errors {errors}; load average "
               f"{load_before[0]:.2f} before, {load_after[0]:.2f} after ({os.cpu_count()} CPUs)")
    print(table)
    print(summary)
    if args.markdown:
        args.markdown.write_text(f"{table}\n\n{summary}\n", encoding="utf-8")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
