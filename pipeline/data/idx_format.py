"""A strict reader for uncompressed IDX files (the MNIST format), and a check of an images/labels pair.

An IDX file is two zero bytes, a dtype code, the number of dimensions, each dimension as a
big-endian uint32, then the values in C order. Every header is checked before anything is
allocated, with Python integers: against the shape the dataset publishes (when the caller knows
it), against the most this pipeline reads, and against the file's real size. So a corrupt or
hostile header, even in a sparse file of exactly the size it claims, fails at once with a message
instead of a ``MemoryError``.
"""

import os
from pathlib import Path

import numpy as np

from pipeline.core.errors import PipelineError
from pipeline.data.datasets import DATASETS, IdxFile

DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
MAX_DIMS = 4
MAX_HEADER_BYTES = 4 + 4 * MAX_DIMS
MAX_DATA_BYTES = 1 << 30
"""The largest file a known dataset has is 47 MB; prepare holds a float32 copy of each (4 × the bytes)."""
PUBLISHED_DTYPE = np.dtype("u1")
"""The values of every known dataset's files: unsigned bytes (code 0x08)."""


def looks_like_idx(head: bytes) -> bool:
    """Whether ``head`` (a file's first four bytes or more) begins as an IDX file does: two zero bytes, a known
    dtype code, and 1 to 4 dimensions."""
    return len(head) >= 4 and head[:2] == b"\0\0" and head[2] in DTYPES and 1 <= head[3] <= MAX_DIMS


class IdxFormatError(PipelineError, ValueError):
    """A file is not a well-formed IDX file, or its arrays do not form a dataset."""


def _header(head: bytes, total: int, source: str,
            expected: IdxFile | None = None) -> tuple[np.dtype, tuple[int, ...], int]:
    """Validate the header bytes against ``expected``, the size limit and the file's ``total`` size;
    return dtype, shape, data offset."""
    if len(head) < 4:
        raise IdxFormatError(f"{source}: truncated IDX header ({total} bytes in all)")
    if head[0] != 0 or head[1] != 0:
        raise IdxFormatError(
            f"{source}: bad magic number 0x{head[:4].hex()} (an IDX file starts with two zero bytes)"
        )
    code, ndim = head[2], head[3]
    if code not in DTYPES:
        raise IdxFormatError(f"{source}: unknown IDX dtype code 0x{code:02x}")
    if not 1 <= ndim <= MAX_DIMS:
        raise IdxFormatError(f"{source}: {ndim} dimensions, expected 1 to {MAX_DIMS}")
    offset = 4 + 4 * ndim
    if len(head) < offset:
        raise IdxFormatError(f"{source}: truncated IDX header ({total} bytes, the header needs {offset})")
    shape = tuple(int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = DTYPES[code]
    if expected is not None and expected.shape is not None and (shape, dtype) != (expected.shape, PUBLISHED_DTYPE):
        raise IdxFormatError(
            f"{source}: header declares shape {shape} of {dtype.name}, but {expected.name} of "
            f"{_dataset_of(expected)} is {expected.shape} of {PUBLISHED_DTYPE.name}; download it again"
        )
    data_bytes = dtype.itemsize * _product(shape)
    if data_bytes > MAX_DATA_BYTES:
        raise IdxFormatError(
            f"{source}: header declares {data_bytes} bytes of data, more than the {MAX_DATA_BYTES} this pipeline reads"
        )
    if total < offset + data_bytes:
        raise IdxFormatError(
            f"{source}: truncated: header declares shape {shape} of {dtype.name} "
            f"({offset + data_bytes} bytes), file has {total}"
        )
    if total > offset + data_bytes:
        raise IdxFormatError(
            f"{source}: {total - offset - data_bytes} trailing bytes after the data of shape {shape} "
            f"({offset + data_bytes} bytes expected)"
        )
    return dtype, shape, offset


def _dataset_of(idx_file: IdxFile) -> str:
    """The known dataset that publishes ``idx_file``, for messages."""
    return next((spec.name for spec in DATASETS.values() if idx_file in spec.files.values()), "its dataset")


def _product(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def _native(array: np.ndarray) -> np.ndarray:
    """The same values in native byte order (no copy for single-byte types)."""
    return array.astype(array.dtype.newbyteorder("="), copy=False)


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse a whole IDX file held in memory; ``source`` names it in error messages."""
    dtype, shape, offset = _header(data[:MAX_HEADER_BYTES], len(data), source)
    values = np.frombuffer(data, dtype=dtype, count=_product(shape), offset=offset)
    return np.array(values.reshape(shape), dtype=dtype.newbyteorder("="))


def read_idx(path: Path, expected: IdxFile | None = None) -> np.ndarray:
    """Read an uncompressed IDX file, checking its header (against ``expected``'s shape, when given, and
    against its size) before reading the data."""
    try:
        with open(path, "rb") as stream:
            total = os.fstat(stream.fileno()).st_size
            dtype, shape, offset = _header(stream.read(MAX_HEADER_BYTES), total, str(path), expected)
            stream.seek(offset)
            count = _product(shape)
            values = np.fromfile(stream, dtype=dtype, count=count)
    except OSError as error:
        raise PipelineError(f"cannot read {path}: {error.strerror or error}") from None
    if values.size != count:
        raise IdxFormatError(f"{path}: file changed while reading ({values.size} of {count} values)")
    return _native(values.reshape(shape))


def validate_pair(images: np.ndarray, labels: np.ndarray, images_source: str, labels_source: str,
                  num_classes: int = 10) -> None:
    """Check that ``images`` (n, h, w) and ``labels`` (n,) in ``0..num_classes-1`` form one dataset."""
    if images.ndim != 3 or 0 in images.shape:
        raise IdxFormatError(
            f"{images_source}: expected non-empty images of shape (n, h, w), got {images.shape}"
        )
    if labels.ndim != 1:
        raise IdxFormatError(f"{labels_source}: expected labels of shape (n,), got {labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise IdxFormatError(
            f"{labels_source}: {labels.shape[0]} labels for {images.shape[0]} images in {images_source}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise IdxFormatError(f"{labels_source}: labels must be integers, got {labels.dtype}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise IdxFormatError(f"{labels_source}: label {bad} outside 0..{num_classes - 1}")


def read_pair(images_path: Path, labels_path: Path, num_classes: int = 10,
              expected: tuple[IdxFile, IdxFile] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read and cross-check an images file and its labels file (of the published ``expected`` files, if given)."""
    images_file, labels_file = expected or (None, None)
    images, labels = read_idx(images_path, images_file), read_idx(labels_path, labels_file)
    validate_pair(images, labels, str(images_path), str(labels_path), num_classes)
    return images, labels
