"""Network faults test_download.py does not stage: resets, slow servers, retries that recover, redirect loops.

A fault-injecting HTTP server on 127.0.0.1 serves each fault under its own folder. Every fault
must end recovered (on the next try or the next source) or in one ``DownloadError`` naming the
source and the reason, and leave the output folder with no unverified or temporary file.
"""

import base64
import gzip
import hashlib
import http.server
import re
import socket
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import QuietHttpServer, free_port, http_server

from pipeline.data.datasets import IdxFile
from pipeline.download import DownloadError, fetch_file

PAYLOAD = struct.pack(">II", 0x801, 64) + bytes(i % 10 for i in range(64))
IDX = IdxFile("train-labels-idx1-ubyte", hashlib.sha256(PAYLOAD).hexdigest(), len(PAYLOAD))
GOOD_GZ = gzip.compress(PAYLOAD)
SHORT_TIMEOUT_S = 0.75
SLOW_S = 10.0


class _Handler(http.server.BaseHTTPRequestHandler):
    """``/<fault>/<name>``: each fault is one method below; ``good`` serves the right file."""

    server: QuietHttpServer  # with requests (a Counter), local_gz (a good copy here, for redirects to file://) and
    # closed_port (nothing listens there, for redirects to ftp://)

    def do_GET(self) -> None:
        fault = self.path.split("/")[1]
        self.server.requests[fault] += 1
        getattr(self, f"fault_{fault}")(self.server.requests[fault])

    def send_body(self, body: bytes, length: int | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def fault_good(self, _: int) -> None:
        self.send_body(GOOD_GZ)

    def fault_reset(self, _: int) -> None:
        """Headers and half the body, then an abortive close (TCP RST, no orderly FIN)."""
        self.send_body(GOOD_GZ[: len(GOOD_GZ) // 2], length=len(GOOD_GZ))
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # the socket's last open file object, so the close below is the real one
        self.connection.close()
        self.close_connection = True

    def fault_reset_once(self, count: int) -> None:
        if count == 1:
            self.fault_reset(count)
        else:
            self.fault_good(count)

    def fault_unannounced_drop(self, _: int) -> None:
        """Half the body with no Content-Length, then close: only the gzip framing shows the loss."""
        self.send_response(200)
        self.end_headers()
        self.wfile.write(GOOD_GZ[: len(GOOD_GZ) // 2])
        self.close_connection = True

    def fault_error_500(self, _: int) -> None:
        self.send_error(500)

    def fault_error_500_once(self, count: int) -> None:
        if count == 1:
            self.send_error(500)
        else:
            self.fault_good(count)

    def fault_error_429_once(self, count: int) -> None:
        if count == 1:
            self.send_error(429)
        else:
            self.fault_good(count)

    def fault_slow_headers(self, _: int) -> None:
        """Nothing at all until long after the client's timeout."""
        if not self.server.release.wait(SLOW_S):
            self.fault_good(0)

    def fault_slow_body(self, _: int) -> None:
        """Headers and half the body, then silence past the client's timeout."""
        self.send_body(GOOD_GZ[: len(GOOD_GZ) // 2], length=len(GOOD_GZ))
        self.wfile.flush()
        if not self.server.release.wait(SLOW_S):
            self.wfile.write(GOOD_GZ[len(GOOD_GZ) // 2:])

    def fault_wrong_bytes(self, _: int) -> None:
        """A well-formed gzip of a file with the right size and the last byte changed."""
        self.send_body(gzip.compress(PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 0xFF])))

    def fault_cut_half(self, _: int) -> None:
        self.send_body(GOOD_GZ[: len(GOOD_GZ) // 2])

    def fault_cut_trailer(self, _: int) -> None:
        """Every compressed byte of the content, but no CRC-32 and size trailer."""
        self.send_body(GOOD_GZ[:-8])

    def fault_cut_header(self, _: int) -> None:
        self.send_body(GOOD_GZ[:5])

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def fault_redirect_self(self, _: int) -> None:
        self.redirect(self.path)

    def fault_redirect_ping(self, _: int) -> None:
        self.redirect(self.path.replace("/redirect_ping/", "/redirect_pong/"))

    def fault_redirect_pong(self, _: int) -> None:
        self.redirect(self.path.replace("/redirect_pong/", "/redirect_ping/"))

    def fault_redirect_good(self, _: int) -> None:
        self.redirect(self.path.replace("/redirect_good/", "/good/"))

    def fault_redirect_absolute_good(self, _: int) -> None:
        host, port = self.server.server_address[:2]
        self.redirect(f"http://{host}:{port}" + self.path.replace("/redirect_absolute_good/", "/good/"))

    def fault_redirect_ftp(self, _: int) -> None:
        """To an FTP server that is not there: followed, it fails as a refused connection, retried."""
        self.redirect(f"ftp://127.0.0.1:{self.server.closed_port}/{IDX.gz_name}")

    def fault_redirect_file(self, _: int) -> None:
        """To a good copy on the client's own disk: a server must never make the client read local files."""
        self.redirect(self.server.local_gz.as_uri())

    def fault_redirect_data(self, _: int) -> None:
        self.redirect("data:application/gzip;base64," + base64.b64encode(GOOD_GZ).decode())

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output clean."""


@dataclass
class Server:
    base: str
    requests: Counter[str]

    def url(self, fault: str) -> str:
        return f"{self.base}/{fault}/"


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The fault server; on teardown sleeping handlers are released and every handler thread is joined."""
    local_gz = tmp_path_factory.mktemp("local") / IDX.gz_name
    local_gz.write_bytes(GOOD_GZ)
    with http_server(_Handler, requests=Counter(), local_gz=local_gz, closed_port=free_port()) as httpd:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", httpd.requests)


# fault -> (the reason in the error, as a regex; requests made with tries=2, 2 when it is retried as transient)
FAILURES = {
    "reset": (r"Connection reset by peer|body truncated", 2),
    "unannounced_drop": (r"gzip stream ends early", 1),
    "error_500": (r"HTTP 500 Internal Server Error \(after 2 tries\)", 2),
    "slow_headers": (r"timed out \(after 2 tries\)", 2),
    "slow_body": (r"read failed mid-body: timed out \(after 2 tries\)", 2),
    "wrong_bytes": (rf"does not match the pinned {IDX.sha256}", 1),
    "cut_half": (r"gzip stream ends early", 1),
    "cut_trailer": (r"gzip stream ends early", 1),
    "cut_header": (r"gzip stream ends early", 1),
    "redirect_self": (r"HTTP 302 .*(loop|redirect)", 5),
    # A redirect to a scheme other than http(s) is refused at once, never followed nor retried.
    "redirect_ftp": (r"redirect to ftp://127\.0\.0\.1:\d+/\S+ refused: only http:// and https:// are followed", 1),
    "redirect_file": (r"redirect to file:///\S+ refused: only http:// and https:// are followed", 1),
    "redirect_data": (r"redirect to data:application/gzip;base64,\S+ refused: only http:// and https://", 1),
}

def _options(fault: str) -> dict[str, Any]:
    """Two tries; a short timeout only where the fault is slowness, so a busy machine cannot fake one."""
    return {"tries": 2, "base_delay": 0.01, "timeout": SHORT_TIMEOUT_S if fault.startswith("slow") else 10.0}


def _files(out: Path) -> list[str]:
    """Every file left under ``out``, hidden temporaries included."""
    return sorted(path.name for path in out.rglob("*") if path.is_file()) if out.exists() else []


@pytest.mark.parametrize("fault", FAILURES)
def test_fault_then_good_source_recovers_with_only_the_verified_file(
    fault: str, server: Server, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    fetch_file(IDX, [server.url(fault), server.url("good")], out / IDX.name, **_options(fault))
    assert (out / IDX.name).read_bytes() == PAYLOAD
    assert _files(out) == [IDX.name]
    assert server.requests[fault] == FAILURES[fault][1]
    assert server.requests["good"] == 1


@pytest.mark.parametrize(
    "fault", list(FAILURES)
)
def test_fault_alone_is_one_download_error_line_naming_source_and_reason_and_leaves_nothing(
    fault: str, server: Server, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with pytest.raises(DownloadError) as raised:
        fetch_file(IDX, [server.url(fault)], out / IDX.name, **_options(fault))
    reason, requests = FAILURES[fault]
    lines = str(raised.value).splitlines()
    assert len(lines) == 3 and lines[2].startswith("Set DATA_MIRROR"), lines
    assert re.fullmatch(rf"  1\. {re.escape(server.url(fault) + IDX.gz_name)}: .*({reason}).*", lines[1]), lines[1]
    assert server.requests[fault] == requests
    assert _files(out) == []


@pytest.mark.parametrize("fault", ["reset_once", "error_500_once", "error_429_once"])
def test_transient_fault_recovers_on_the_next_try_of_the_same_source(
    fault: str, server: Server, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    fetch_file(IDX, [server.url(fault)], out / IDX.name, **_options(fault))
    assert (out / IDX.name).read_bytes() == PAYLOAD
    assert _files(out) == [IDX.name]
    assert server.requests[fault] == 2


@pytest.mark.parametrize("fault", ["redirect_good", "redirect_absolute_good"], ids=["relative", "absolute-http"])
def test_redirect_is_followed_to_the_file(server: Server, tmp_path: Path, fault: str) -> None:
    fetch_file(IDX, [server.url(fault)], tmp_path / IDX.name, **_options(fault))
    assert (tmp_path / IDX.name).read_bytes() == PAYLOAD
    assert server.requests["good"] == 1


def test_redirect_to_a_local_file_is_refused_even_when_it_holds_the_right_content(
    server: Server, tmp_path: Path
) -> None:
    with pytest.raises(DownloadError) as raised:
        fetch_file(IDX, [server.url("redirect_file")], tmp_path / IDX.name, tries=3, base_delay=0.01, timeout=5.0)
    assert "refused" in str(raised.value) and "redirect loop" not in str(raised.value)
    assert server.requests["redirect_file"] == 1
    assert _files(tmp_path) == []


def test_redirect_ping_pong_is_not_followed_forever_nor_retried(server: Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 302"):
        fetch_file(IDX, [server.url("redirect_ping")], tmp_path / IDX.name, tries=3, base_delay=0.01, timeout=5.0)
    assert 2 <= server.requests["redirect_ping"] + server.requests["redirect_pong"] <= 11
    assert _files(tmp_path) == []
