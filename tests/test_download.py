"""The download stage: sources, fall-through, verification and cleanup, against a real local HTTP server."""

import gzip
import hashlib
import http.server
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from helpers import QuietHttpServer, free_port, http_server

from pipeline import download
from pipeline.data.datasets import DATASETS, DatasetSpec, IdxFile, Role
from pipeline.download import DownloadError, dataset_sources, fetch_dataset, fetch_file

FAST = {"tries": 2, "base_delay": 0.01, "timeout": 5.0}
NAMES: dict[Role, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _images(count: int, fill: int) -> bytes:
    return struct.pack(">IIII", 0x803, count, 4, 4) + bytes((fill + i) % 256 for i in range(count * 16))


def _labels(count: int) -> bytes:
    return struct.pack(">II", 0x801, count) + bytes(i % 10 for i in range(count))


PAYLOADS: dict[Role, bytes] = {
    "train_images": _images(12, 7),
    "train_labels": _labels(12),
    "test_images": _images(5, 99),
    "test_labels": _labels(5),
}
SPEC = DatasetSpec(
    name="mnist",
    files={
        role: IdxFile(NAMES[role], hashlib.sha256(data).hexdigest(), len(data)) for role, data in PAYLOADS.items()
    },
    default_mirrors=("https://default.invalid/mnist/",),
    class_names=tuple("0123456789"),
)
LABELS = SPEC.files["train_labels"]
RAW_WRONG_BYTES = PAYLOADS["train_labels"][:-1] + bytes([PAYLOADS["train_labels"][-1] ^ 1])


def _write_mirror(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for role, idx in SPEC.files.items():
        (folder / idx.gz_name).write_bytes(gzip.compress(PAYLOADS[role]))
    return folder


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the test's folder, except four routes.

    ``/truncated/`` announces more bytes than it sends, ``/endless/`` streams empty gzip members
    with no length, ``/stall/`` sends half a body and hangs, and ``/flaky/`` answers 503 once per
    file before serving ``/good/``.
    """

    server: QuietHttpServer

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        folder, _, name = self.path.lstrip("/").partition("/")
        if folder == "truncated":
            body = (Path(self.directory) / "good" / name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) + 1000))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
        elif folder == "endless":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(gzip.compress(b"") * (1 << 14))
            self.close_connection = True
        elif folder == "stall":
            body = gzip.compress(bytes(1 << 24))
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.server.release.wait(10)  # until the client gives up and the fixture closes the server
        elif folder == "flaky" and self.path not in self.server.failed:
            self.server.failed.add(self.path)
            self.send_error(503)
        else:
            self.path = self.path.replace("/flaky/", "/good/", 1)
            super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output clean."""


@dataclass
class Server:
    base: str
    requests: list[str]

    def url(self, folder: str) -> str:
        return f"{self.base}/{folder}/"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A real HTTP server on 127.0.0.1: ``good/`` holds the right files, each other folder a bad labels file."""
    root = tmp_path / "served"
    _write_mirror(root / "good")
    labels_gz = gzip.compress(PAYLOADS["train_labels"])
    bad = {
        "corrupt": b"this is not a gzip stream",
        "badcrc": labels_gz[:-8] + bytes(4) + labels_gz[-4:],
        "wrongdigest": gzip.compress(bytes([PAYLOADS["train_labels"][0] ^ 1]) + PAYLOADS["train_labels"][1:]),
        "bomb": gzip.compress(bytes(LABELS.size * 50)),
        "oversized": bytes(3 * LABELS.size + (1 << 16)),
        # A mirror that gunzipped the files but kept their names, and its neighbours.
        "raw_wrong_bytes": RAW_WRONG_BYTES,
        "raw_truncated": PAYLOADS["train_labels"][:-3],
        "raw_wrong_file": PAYLOADS["test_labels"],
        "gzip_wrong_file": gzip.compress(PAYLOADS["test_labels"]),
        "gzip_truncated": labels_gz[: len(labels_gz) // 2],
        "empty_file": b"",
        "three_bytes": b"\0\0\x08",
    }
    for folder, content in bad.items():
        (root / folder).mkdir()
        (root / folder / LABELS.gz_name).write_bytes(content)
    (root / "empty").mkdir()
    with http_server(partial(_Handler, directory=str(root)), requests=[], failed=set()) as httpd:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", httpd.requests)


def _bad_source(kind: str, server: Server, tmp_path: Path) -> str:
    if kind == "unreachable":
        return f"http://127.0.0.1:{free_port()}/"
    if kind == "empty_directory":
        return str(tmp_path.resolve() / "served" / "empty")
    if kind == "ftp":
        return "ftp://127.0.0.1/mnist/"
    return server.url(kind)


BAD_SOURCES = {
    "empty": "HTTP 404",
    "corrupt": "neither gzip nor raw IDX data: it starts with 0x74686973",
    "badcrc": "corrupt gzip data",
    "wrongdigest": f"does not match the pinned {LABELS.sha256}",
    "truncated": "body truncated",
    "bomb": f"larger than the expected {LABELS.size} bytes",
    "oversized": "more than the",
    "endless": "body exceeds",
    "unreachable": "cannot connect",
    "empty_directory": "No such file or directory",
    "ftp": "unsupported scheme 'ftp'",
    "raw_wrong_bytes": f"not gzip but raw IDX data, and SHA-256 {hashlib.sha256(RAW_WRONG_BYTES).hexdigest()} does not",
    "raw_truncated": f"not gzip but raw IDX data, and content is {LABELS.size - 3} bytes, expected {LABELS.size}",
    "raw_wrong_file": f"not gzip but raw IDX data, and content is {len(PAYLOADS['test_labels'])} bytes, expected",
    "gzip_wrong_file": f"content is {len(PAYLOADS['test_labels'])} bytes, expected {LABELS.size}",
    "gzip_truncated": "gzip stream ends early (truncated)",
    "empty_file": "the file is empty",
    "three_bytes": "neither gzip nor raw IDX data: it starts with 0x000008",
}


@pytest.mark.parametrize("form", ["relative_dir", "dir_with_slash", "file_url", "file_url_with_slash", "http"])
def test_every_source_form_yields_the_verified_uncompressed_files(
    form: str, server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = _write_mirror(tmp_path / "mirror")
    monkeypatch.chdir(tmp_path)
    source = {
        "relative_dir": "mirror",
        "dir_with_slash": f"{mirror}/",
        "file_url": mirror.as_uri(),
        "file_url_with_slash": f"{mirror.as_uri()}/",
        "http": server.url("good").rstrip("/"),
    }[form]
    paths = fetch_dataset(SPEC, [source], tmp_path / "out", **FAST)
    assert {role: path.read_bytes() for role, path in paths.items()} == PAYLOADS
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(NAMES.values())


@pytest.mark.parametrize("kind", BAD_SOURCES)
def test_bad_source_falls_through_to_the_next(kind: str, server: Server, tmp_path: Path) -> None:
    target = tmp_path / "out" / LABELS.name
    fetch_file(LABELS, [_bad_source(kind, server, tmp_path), server.url("good")], target, **FAST)
    assert target.read_bytes() == PAYLOADS["train_labels"]
    assert server.requests[-1] == f"/good/{LABELS.gz_name}"


@pytest.mark.parametrize("kind", BAD_SOURCES)
def test_bad_source_alone_fails_with_its_reason_and_leaves_nothing(
    kind: str, server: Server, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    source = _bad_source(kind, server, tmp_path)
    with pytest.raises(DownloadError) as raised:
        fetch_file(LABELS, [source], out / LABELS.name, **FAST)
    assert f"{source.rstrip('/')}/{LABELS.gz_name}" in str(raised.value)
    assert BAD_SOURCES[kind] in str(raised.value)
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize("form", ["directory", "http"])
def test_raw_idx_files_under_gz_names_are_accepted_when_their_digest_matches(
        form: str, server: Server, tmp_path: Path) -> None:
    """The reported case: a mirror that gunzipped the files but kept their names was "corrupt gzip data"."""
    mirror = tmp_path / "served" / "gunzipped"
    mirror.mkdir(parents=True)
    for role, idx in SPEC.files.items():
        (mirror / idx.gz_name).write_bytes(PAYLOADS[role])
    paths = fetch_dataset(SPEC, [str(mirror) if form == "directory" else server.url("gunzipped")],
                          tmp_path / "out", **FAST)
    assert {role: path.read_bytes() for role, path in paths.items()} == PAYLOADS


def test_all_failing_sources_are_listed_in_order_and_no_unverified_file_remains(
    server: Server, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / LABELS.name).write_bytes(b"stale, unverified")
    nowhere = tmp_path.resolve() / "nowhere"
    sources = [server.url("empty"), str(nowhere), server.url("wrongdigest")]
    with pytest.raises(DownloadError) as raised:
        fetch_file(LABELS, sources, out / LABELS.name, **FAST)
    lines = str(raised.value).splitlines()
    assert LABELS.name in lines[0]
    assert lines[1].startswith(f"  1. {server.url('empty')}{LABELS.gz_name}: HTTP 404")
    assert lines[2].startswith(f"  2. {nowhere / LABELS.gz_name}: cannot open")
    assert lines[3].startswith(f"  3. {server.url('wrongdigest')}{LABELS.gz_name}: SHA-256")
    assert list(out.iterdir()) == []


def test_multi_member_highly_compressed_gzip_is_inflated_whole(tmp_path: Path) -> None:
    payload = bytes(3 << 20) + b"end"
    idx = IdxFile("zeros-idx1-ubyte", hashlib.sha256(payload).hexdigest(), len(payload))
    (tmp_path / idx.gz_name).write_bytes(gzip.compress(payload[:1000]) + gzip.compress(payload[1000:]))
    fetch_file(idx, [str(tmp_path)], tmp_path / "out" / idx.name, **FAST)
    assert (tmp_path / "out" / idx.name).read_bytes() == payload


def test_existing_verified_files_are_not_fetched_again(server: Server, tmp_path: Path) -> None:
    out = _write_raw(tmp_path / "out")
    fetch_dataset(SPEC, [server.url("good")], out, **FAST)
    assert server.requests == []


def test_existing_wrong_file_is_replaced(server: Server, tmp_path: Path) -> None:
    out = _write_raw(tmp_path / "out")
    (out / LABELS.name).write_bytes(bytes(LABELS.size))
    paths = fetch_dataset(SPEC, [server.url("good")], out, **FAST)
    assert paths["train_labels"].read_bytes() == PAYLOADS["train_labels"]
    assert server.requests == [f"/good/{LABELS.gz_name}"]


def test_server_error_is_retried_then_succeeds(server: Server, tmp_path: Path) -> None:
    target = tmp_path / "out" / LABELS.name
    fetch_file(LABELS, [server.url("flaky")], target, tries=3, base_delay=0.01, timeout=5.0)
    assert target.read_bytes() == PAYLOADS["train_labels"]
    assert server.requests == [f"/flaky/{LABELS.gz_name}"] * 2


def test_server_error_is_not_retried_beyond_the_given_tries(server: Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 503"):
        fetch_file(LABELS, [server.url("flaky")], tmp_path / LABELS.name, tries=1, base_delay=0.01, timeout=5.0)
    assert len(server.requests) == 1


def test_not_found_is_not_retried(server: Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch_file(LABELS, [server.url("empty")], tmp_path / LABELS.name, tries=3, base_delay=0.01, timeout=5.0)
    assert len(server.requests) == 1


def test_progress_bar_names_the_file(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fetch_file(LABELS, [server.url("good")], tmp_path / LABELS.name, progress=True, **FAST)
    assert LABELS.name in capsys.readouterr().err


def test_mirror_env_comes_first_then_params_mirrors_or_defaults() -> None:
    spec = DATASETS["mnist"]
    env = {download.MIRROR_ENV: "/env/mirror"}
    assert dataset_sources(spec, ("/a", "/b"), env) == ["/env/mirror/mnist", "/a", "/b"]
    assert dataset_sources(spec, (), env) == ["/env/mirror/mnist", *spec.default_mirrors]
    assert dataset_sources(spec, ("/a",), {}) == ["/a"]
    assert dataset_sources(spec, ("/env/mirror/mnist", "/a"), env) == ["/env/mirror/mnist", "/a"]
    assert dataset_sources(spec, (), {download.MIRROR_ENV: ""}) == list(spec.default_mirrors)


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_a_mirror_is_asked_only_for_the_files_of_the_dataset_the_params_name(dataset: str) -> None:
    """The reported case: with MNIST_MIRROR set, Fashion-MNIST was looked for in the MNIST folder."""
    env = {download.MIRROR_ENV: "/data", download.MNIST_ALIAS_ENV: "/old/mnist-folder"}
    sources = dataset_sources(DATASETS[dataset], ("https://example.org/x/",), env)
    alias = ["/old/mnist-folder"] if dataset == "mnist" else []
    assert sources == [f"/data/{dataset}", *alias, "https://example.org/x/"]
    env = {download.MIRROR_ENV: "https://mirror.example.org/data/", download.MNIST_ALIAS_ENV: "file:///old/mnist"}
    alias = ["file:///old/mnist"] if dataset == "mnist" else []
    assert dataset_sources(DATASETS[dataset], (), env)[:1 + len(alias)] == [
        f"https://mirror.example.org/data/{dataset}/", *alias]


def test_the_former_variable_alone_still_serves_mnist() -> None:
    spec = DATASETS["mnist"]
    assert dataset_sources(spec, ("/a",), {download.MNIST_ALIAS_ENV: "/old/mnist"}) == ["/old/mnist", "/a"]
    assert dataset_sources(DATASETS["fashion_mnist"], ("/a",), {download.MNIST_ALIAS_ENV: "/old/mnist"}) == ["/a"]


def test_relative_mirrors_from_env_and_params_are_taken_against_the_project_root_from_a_temporary_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a DVC temp experiment the working directory is a copy under .dvc/tmp/exps that lacks the mirror."""
    root = tmp_path / "repo"
    copy = root / ".dvc" / "tmp" / "exps" / "tmpabc"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(copy))
    env = {download.MIRROR_ENV: "data-mirror", download.MNIST_ALIAS_ENV: "mnist-mirror"}
    mirrors = ("../shared/mnist", "file:local/mnist", "file:///abs/mnist", "https://example.org/mnist/", "/abs/x")
    assert dataset_sources(DATASETS["mnist"], mirrors, env) == [
        str(root / "data-mirror" / "mnist"), str(root / "mnist-mirror"), str(root / "../shared/mnist"),
        (root / "local" / "mnist").as_uri(),
        "file:///abs/mnist", "https://example.org/mnist/", "/abs/x",
    ]


def test_relative_mirror_supplies_the_files_to_a_download_run_from_a_temporary_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "repo"
    _write_mirror(root / "mirror")
    copy = root / ".dvc" / "tmp" / "exps" / "tmpabc"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(copy))
    paths = fetch_dataset(SPEC, dataset_sources(SPEC, ("mirror",), {}), copy / "raw", **FAST)
    assert {role: path.read_bytes() for role, path in paths.items()} == PAYLOADS


def test_main_reports_every_failed_source_and_exits_1(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for variable in (download.MIRROR_ENV, *download.ALIASES):
        monkeypatch.delenv(variable, raising=False)
    nowhere = tmp_path.resolve() / "nowhere"
    params = _params_file(tmp_path, [server.url("empty"), str(nowhere)])
    assert download.main(["--params", str(params), "--out", str(tmp_path / "raw")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("download: error: no source supplied a verified train-images-idx3-ubyte")
    assert f"1. {server.url('empty')}" in err and f"2. {nowhere}" in err
    assert list((tmp_path / "raw").rglob("*")) == [], "nothing, not even an empty dataset folder"


def test_ctrl_c_mid_download_leaves_no_partial_file(server: Server, tmp_path: Path) -> None:
    params = _params_file(tmp_path, [server.url("stall")])
    out = tmp_path / "raw" / "mnist"
    env = {key: value for key, value in os.environ.items() if key not in {download.MIRROR_ENV, *download.ALIASES, "CI"}}
    command = [sys.executable, "-m", "pipeline.download", "--params", str(params), "--out", str(tmp_path / "raw")]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not any(path.stat().st_size for path in out.glob(".*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(out.glob(".*")), "the stage never started writing its temporary file"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "interrupted" in err
    assert not out.exists(), "no partial file, and no empty dataset folder either"


@pytest.mark.integration
@pytest.mark.parametrize("variable", ["DATA_MIRROR", "MNIST_MIRROR"])
def test_main_fetches_real_mnist_from_mirror_env_before_params_mirrors(
    mnist_dir: Path, server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    """``DATA_MIRROR`` names a folder of dataset folders; ``MNIST_MIRROR``, its former name, MNIST's own folder."""
    for name in (download.MIRROR_ENV, *download.ALIASES):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "mnist").symlink_to(mnist_dir)
    monkeypatch.setenv(variable, str(tmp_path / "mirror") if variable == "DATA_MIRROR" else str(mnist_dir))
    params = _params_file(tmp_path, [server.url("good")])
    assert download.main(["--params", str(params), "--out", str(tmp_path / "raw")]) == 0
    for idx in DATASETS["mnist"].files.values():
        assert (tmp_path / "raw" / "mnist" / idx.name).stat().st_size == idx.size
    assert server.requests == []


@pytest.mark.integration
def test_main_accepts_the_real_mnist_files_gunzipped_under_their_gz_names(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror = tmp_path / "gunzipped" / "mnist"
    mirror.mkdir(parents=True)
    for idx in DATASETS["mnist"].files.values():
        (mirror / idx.gz_name).write_bytes(gzip.decompress((mnist_dir / idx.gz_name).read_bytes()))
    monkeypatch.setenv(download.MIRROR_ENV, str(mirror.parent))
    (tmp_path / "params.yaml").write_text("data:\n  dataset: mnist\n")
    assert download.main(["--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "raw")]) == 0
    assert capsys.readouterr().out == f"download: mnist: 4 files verified by SHA-256 in {tmp_path / 'raw' / 'mnist'}\n"
    for idx in DATASETS["mnist"].files.values():
        assert (tmp_path / "raw" / "mnist" / idx.name).read_bytes() == (mirror / idx.gz_name).read_bytes()


def _write_raw(out: Path) -> Path:
    out.mkdir(parents=True)
    for role, idx in SPEC.files.items():
        (out / idx.name).write_bytes(PAYLOADS[role])
    return out


def _params_file(tmp_path: Path, mirrors: list[str]) -> Path:
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  dataset: mnist\n  mirrors:\n" + "".join(f"    - '{m}'\n" for m in mirrors))
    return params
