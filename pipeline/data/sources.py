"""Fetch one gzip-compressed IDX file from one source, verifying its content while it streams.

A source is a local directory, a ``file://`` URL or an ``http(s)://`` URL that holds
``<name>.gz``; an HTTP source may redirect to another http(s) URL only. The gzip stream is
inflated chunk by chunk into a file the caller names (a temporary path), while its SHA-256 and
size are checked against the pinned values; nothing is held in memory whole. Any failure raises
``SourceError`` with a one-line reason.

A mirror that gunzipped the files but kept their ``.gz`` names serves raw IDX: a body that starts as
an IDX file does, not as gzip, is taken as it is. It is safe to accept because the pinned SHA-256 is
that of the uncompressed file, so the same check decides either way; a failure then says the file is
not gzip but raw IDX.
"""

import hashlib
import http.client
import itertools
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from io import BufferedIOBase
from pathlib import Path
from typing import IO

from pipeline.core.errors import clipped
from pipeline.data.datasets import IdxFile
from pipeline.data.idx_format import looks_like_idx

READ_CHUNK = 1 << 18
INFLATE_CHUNK = 1 << 20
GZIP_WBITS = 16 + zlib.MAX_WBITS
GZIP_MAGIC = b"\x1f\x8b"
SNIFF_BYTES = 4
"""Enough of a body to tell gzip (two magic bytes) from raw IDX (two zero bytes, a dtype code, a dimension count)."""
USER_AGENT = "vae-pipeline-download/0.1"

Progress = Callable[[int], None]


class SourceError(Exception):
    """One source could not supply one file; the message says why."""


class TransientError(SourceError):
    """A failure worth retrying: a refused or dropped connection, a timeout, HTTP 5xx or 429."""


class RedirectRefusedError(SourceError):
    """An HTTP source redirected to a scheme other than http(s); never followed, never retried."""


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http:// and https:// only.

    urllib would follow one to ``ftp://`` (and retry it as a refused connection), and refuses
    ``file://`` with an ``HTTPError`` that reads like a redirect loop; a mirror must not make the
    client read its own disk or speak another protocol, so both are refused here, saying why.
    """

    def http_error_302(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                       headers: http.client.HTTPMessage) -> IO[bytes] | None:
        location = headers.get("location") or headers.get("uri")
        if location is not None:
            target = urllib.parse.urljoin(req.full_url, location.strip())
            if _scheme(target) not in {"http", "https"}:
                fp.close()
                raise RedirectRefusedError(f"HTTP {code} redirect to {clipped(target)} refused: only http:// and "
                                           "https:// are followed")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects)


def location(source: str, idx: IdxFile) -> str:
    """Where ``source`` keeps ``idx``, for messages: the URL, or the absolute path of a directory source."""
    if _scheme(source):
        return f"{source.rstrip('/')}/{idx.gz_name}"
    return str(_local_path(source) / idx.gz_name)


def compressed_limit(idx: IdxFile) -> int:
    """The most compressed bytes read for ``idx``: generous for gzip, small enough to protect the disk."""
    return 2 * idx.size + (1 << 16)


def fetch(source: str, idx: IdxFile, destination: Path, *, tries: int, base_delay: float,
          timeout: float, progress: Progress | None = None) -> None:
    """Write the verified, uncompressed ``idx`` from ``source`` to ``destination``.

    Transient failures are retried up to ``tries`` attempts in all, waiting ``base_delay``
    seconds and doubling each time. ``progress`` receives the uncompressed bytes written so far.
    """
    for attempt in range(1, tries + 1):
        try:
            with _open(source, idx, timeout) as (stream, announced):
                head, chunks = _sniffed(_chunks(stream, announced, compressed_limit(idx)))
                if head.startswith(GZIP_MAGIC):
                    _write_verified(_inflate(chunks), idx, destination, progress)
                elif looks_like_idx(head):
                    _write_raw_idx(chunks, idx, destination, progress)
                else:
                    raise SourceError(f"neither gzip nor raw IDX data: it starts with 0x{head.hex()}")
            return
        except TransientError as error:
            if attempt == tries:
                suffix = f" (after {tries} tries)" if tries > 1 else ""
                raise TransientError(f"{error}{suffix}") from None
            time.sleep(base_delay * 2 ** (attempt - 1))


def matches(path: Path, idx: IdxFile) -> bool:
    """Whether ``path`` is a file with exactly ``idx``'s size and SHA-256."""
    if not path.is_file() or path.stat().st_size != idx.size:
        return False
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(INFLATE_CHUNK):
            digest.update(chunk)
    return digest.hexdigest() == idx.sha256


def _scheme(source: str) -> str:
    return urllib.parse.urlsplit(source).scheme.lower()


def _local_path(source: str) -> Path:
    parts = urllib.parse.urlsplit(source)
    if parts.scheme.lower() == "file":
        if parts.netloc not in {"", "localhost"}:
            raise SourceError(f"file:// URL names a remote host {parts.netloc!r}")
        return Path(urllib.request.url2pathname(parts.path))
    if parts.scheme:
        raise SourceError(f"unsupported scheme {parts.scheme!r}; use a directory, file:// or http(s)://")
    return Path(source).expanduser().resolve()


@contextmanager
def _open(source: str, idx: IdxFile, timeout: float) -> Iterator[tuple[BufferedIOBase, int | None]]:
    """Yield the compressed stream for ``idx`` and its announced length, if any."""
    if _scheme(source) not in {"http", "https"}:
        try:
            stream = open(_local_path(source) / idx.gz_name, "rb")  # noqa: SIM115 (closed by the with below)
        except OSError as error:
            raise SourceError(f"cannot open: {error.strerror}") from None
        with stream:
            yield stream, None
        return
    request = urllib.request.Request(
        location(source, idx), headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    )
    try:
        response = _OPENER.open(request, timeout=timeout)
    except RedirectRefusedError:
        raise
    except urllib.error.HTTPError as error:
        error.close()
        failure = TransientError if error.code >= 500 or error.code == 429 else SourceError
        reason = "redirect loop or too many redirects" if 300 <= error.code < 400 else error.reason
        raise failure(f"HTTP {error.code} {reason}") from None
    except urllib.error.URLError as error:
        failure = SourceError if isinstance(error.reason, ssl.SSLError) else TransientError
        raise failure(f"cannot connect: {error.reason}") from None
    except (OSError, http.client.HTTPException) as error:
        raise TransientError(f"connection failed: {_describe(error)}") from None
    with response:
        header = response.headers.get("Content-Length")
        announced = int(header) if header and header.isdigit() else None
        if announced is not None and announced > compressed_limit(idx):
            raise SourceError(f"server announces {announced} bytes, more than the {compressed_limit(idx)} allowed")
        yield response, announced


def _chunks(stream: BufferedIOBase, announced: int | None, limit: int) -> Iterator[bytes]:
    """The compressed body, refusing more than ``limit`` bytes or fewer than were announced."""
    received = 0
    while chunk := _read(stream):
        received += len(chunk)
        if received > limit:
            raise SourceError(f"body exceeds {limit} bytes")
        yield chunk
    if announced is not None and received < announced:
        raise TransientError(f"body truncated: received {received} of {announced} bytes")


def _sniffed(chunks: Iterator[bytes]) -> tuple[bytes, Iterator[bytes]]:
    """The first ``SNIFF_BYTES`` of the body (fewer if it is shorter), and every chunk of it, those bytes included."""
    head = b""
    while len(head) < SNIFF_BYTES and (chunk := next(chunks, None)) is not None:
        head += chunk
    if not head:
        raise SourceError("the file is empty")
    return head[:SNIFF_BYTES], itertools.chain([head], chunks)


def _write_raw_idx(chunks: Iterable[bytes], idx: IdxFile, destination: Path, progress: Progress | None) -> None:
    """Write an uncompressed body under verification, saying so if it is refused."""
    try:
        _write_verified(chunks, idx, destination, progress)
    except TransientError:
        raise
    except SourceError as error:
        raise SourceError(f"not gzip but raw IDX data, and {error}") from None


def _inflate(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Inflate a gzip stream (one member or several), at most ``INFLATE_CHUNK`` bytes at a time."""
    inflater = zlib.decompressobj(GZIP_WBITS)
    try:
        for chunk in chunks:
            pending = chunk
            while pending:
                if inflater.eof:
                    inflater = zlib.decompressobj(GZIP_WBITS)
                yield inflater.decompress(pending, INFLATE_CHUNK)
                pending = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
        yield inflater.flush()
    except zlib.error as error:
        raise SourceError(f"corrupt gzip data ({error})") from None
    if not inflater.eof:
        raise SourceError("gzip stream ends early (truncated)")


def _write_verified(blocks: Iterable[bytes], idx: IdxFile, destination: Path, progress: Progress | None) -> None:
    """Write ``blocks`` to ``destination`` while hashing; raise unless they are exactly ``idx``."""
    digest = hashlib.sha256()
    written = 0
    with open(destination, "wb") as sink:
        for block in blocks:
            written += len(block)
            if written > idx.size:
                raise SourceError(f"content is larger than the expected {idx.size} bytes")
            digest.update(block)
            sink.write(block)
            if progress is not None:
                progress(written)
    if written != idx.size:
        raise SourceError(f"content is {written} bytes, expected {idx.size}")
    if digest.hexdigest() != idx.sha256:
        raise SourceError(f"SHA-256 {digest.hexdigest()} does not match the pinned {idx.sha256}")


def _read(stream: BufferedIOBase) -> bytes:
    """What ``stream`` has ready, up to ``READ_CHUNK`` bytes; a network failure mid-body is transient."""
    try:
        return stream.read1(READ_CHUNK)
    except (OSError, http.client.HTTPException) as error:
        raise TransientError(f"read failed mid-body: {_describe(error)}") from None


def _describe(error: Exception) -> str:
    return str(error) or type(error).__name__
