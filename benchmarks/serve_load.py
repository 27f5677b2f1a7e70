"""Load on the served decoder: `mlflow models serve` on 127.0.0.1, driven by 1, 4 and 16 concurrent clients.

The model is the champion decoder (``models:/<check.registered_models.decoder>@champion``) when the
store has one, else the decoder logged by the run in ``models/run.json``. The server reads a copy of
the store in a temporary folder (the artifacts stay where the store says), so a training that writes
the project's store meanwhile neither slows nor locks it; it runs with ``--env-manager local``, the
project's own environment, and stops at the end.

For every number of clients and every request size (latent points per request), the clients post for
``--seconds`` each, every client on its own keep-alive connection, one request after another. A request
is an error unless it answers HTTP 200 with strict JSON holding one 784-pixel row per point. Printed per
cell: requests per second, median and 99th-percentile latency, errors; then the resident memory of the
server's process tree (the server and its workers) after the warm-up and at the end, and the load average.
Goal: 0 errors and no memory growth. With ``--repeats N`` each cell runs N times and the medians are shown.

    uv run python benchmarks/serve_load.py [--model-uri URI] [--clients 1 4 16] [--points 1 100]
        [--seconds 10] [--repeats 1] [--workers 1] [--markdown FILE]
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


def default_model_uri(root: Path, store: str) -> str:
    """The champion decoder if the store has one, else the decoder logged by ``models/run.json``'s run."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from pipeline.core.params import load_params

    name = load_params(root / "params.yaml").check.registered_models.decoder
    client = mlflow.MlflowClient(tracking_uri=store)
    try:
        client.get_model_version_by_alias(name, "champion")
        return f"models:/{name}@champion"
    except MlflowException:
        run = json.loads((root / "models" / "run.json").read_text(encoding="utf-8"))
        return f"models:/{run['models']['decoder']}"


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


def request_body(points: int, seed: int) -> bytes:
    z = np.random.default_rng(seed).normal(size=(points, LATENT_DIM)).astype(np.float32)
    return json.dumps({"inputs": z.tolist()}).encode()


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


def drive(port: int, clients: int, points: int, seconds: float) -> Cell:
    """``clients`` threads, each on its own connection, posting one request after another for ``seconds``."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = time.monotonic()
    stop = start + seconds

    def client(number: int) -> None:
        body = request_body(points, seed=number)
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


def median_row(runs: Sequence[Cell]) -> list[object]:
    """One table row: medians over the repeats of one cell."""
    first = runs[0]
    return [first.clients, first.points, sum(run.requests for run in runs),
            f"{statistics.median(run.per_second for run in runs):.1f}",
            f"{statistics.median(run.percentile(50) for run in runs):.1f}",
            f"{statistics.median(run.percentile(99) for run in runs):.1f}",
            sum(run.errors for run in runs)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-uri", help="the model to serve (default: the champion decoder, else the run's)")
    parser.add_argument("--store", type=Path, default=REPO_ROOT / "mlflow.db", help="the SQLite store to copy")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--points", type=int, nargs="+", default=[1, 100], help="latent points per request")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each cell posts")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each cell; medians are shown")
    parser.add_argument("--workers", type=int, default=1, help="mlflow models serve --workers")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    if not args.store.is_file():
        raise SystemExit(f"no MLflow store at {args.store}: run `uv run dvc repro` first, or pass --store")

    with tempfile.TemporaryDirectory(prefix="serve-load-") as scratch:
        store = f"sqlite:///{shutil.copyfile(args.store, Path(scratch) / 'mlflow.db')}"
        model_uri = args.model_uri or default_model_uri(REPO_ROOT, store)
        load_before = os.getloadavg()
        with served(model_uri, store, args.workers, Path(scratch) / "serve.log") as (port, pid):
            drive(port, 1, 1, 2.0)  # warm-up: the first requests trace the model's functions
            rss_start = tree_rss_mib(pid)
            rows = [median_row([drive(port, clients, points, args.seconds) for _ in range(args.repeats)])
                    for points in args.points for clients in args.clients]
            rss_end = tree_rss_mib(pid)
        load_after = os.getloadavg()

    table = tabulate(rows, headers=["clients", "points/request", "requests", "requests/s", "median ms", "p99 ms",
                                    "errors"], tablefmt="github")
    errors = sum(int(row[-1]) for row in rows)
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
