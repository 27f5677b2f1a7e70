"""The IDX parser on synthetic files: valid arrays round-trip, malformed files fail with IdxFormatError."""

import contextlib
import gzip
import os
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.errors import PipelineError
from pipeline.data.datasets import DATASETS
from pipeline.data.idx_format import DTYPES, IdxFormatError, parse_idx, read_idx, read_pair, validate_pair

CODES = {dtype.newbyteorder("="): code for code, dtype in DTYPES.items()}


def idx_bytes(array: np.ndarray, code: int | None = None, shape: tuple[int, ...] | None = None) -> bytes:
    """An IDX file holding ``array``; ``code`` and ``shape`` override what the header claims."""
    code = CODES[array.dtype] if code is None else code
    shape = array.shape if shape is None else shape
    header = bytes([0, 0, code, len(shape)]) + b"".join(size.to_bytes(4, "big") for size in shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(tmp_path: Path, data: bytes, name: str = "file-idx") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_reads_valid_labels_file(tmp_path: Path) -> None:
    labels = np.array([5, 0, 4, 1, 9], dtype=np.uint8)
    result = read_idx(write(tmp_path, idx_bytes(labels)))
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, labels)


def test_reads_valid_images_file_with_shape(tmp_path: Path) -> None:
    images = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28).astype(np.uint8)
    result = read_idx(write(tmp_path, idx_bytes(images)))
    assert result.shape == (3, 28, 28)
    np.testing.assert_array_equal(result, images)


@pytest.mark.parametrize("dtype", ["i1", "i2", "i4", "f4", "f8"])
def test_multibyte_types_are_read_big_endian_into_native_order(tmp_path: Path, dtype: str) -> None:
    values = np.array([[-3, 2], [1000 if dtype != "i1" else 100, 7]], dtype=dtype)
    data = idx_bytes(values)
    for result in (read_idx(write(tmp_path, data)), parse_idx(data)):
        assert result.dtype == np.dtype(dtype) and result.dtype.isnative
        np.testing.assert_array_equal(result, values)


def test_parse_idx_returns_a_writable_copy() -> None:
    result = parse_idx(idx_bytes(np.array([1, 2], dtype=np.uint8)))
    result[0] = 7
    assert result.tolist() == [7, 2]


def test_zero_length_dimension_is_an_empty_array(tmp_path: Path) -> None:
    result = read_idx(write(tmp_path, idx_bytes(np.zeros((0, 28, 28), dtype=np.uint8))))
    assert result.shape == (0, 28, 28)


def test_truncated_data_is_rejected_naming_the_file(tmp_path: Path) -> None:
    data = idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8))
    path = write(tmp_path, data[:-1], "train-images-idx3-ubyte")
    with pytest.raises(IdxFormatError, match=r"train-images-idx3-ubyte: truncated"):
        read_idx(path)


@pytest.mark.parametrize("length", [0, 3, 4, 11])
def test_truncated_header_is_rejected(tmp_path: Path, length: int) -> None:
    data = idx_bytes(np.zeros((2, 2, 2), dtype=np.uint8))[:length]
    with pytest.raises(IdxFormatError, match="truncated IDX header"):
        read_idx(write(tmp_path, data))
    with pytest.raises(IdxFormatError, match="truncated IDX header"):
        parse_idx(data)


def test_trailing_bytes_are_rejected(tmp_path: Path) -> None:
    data = idx_bytes(np.zeros(10, dtype=np.uint8)) + b"\x00"
    with pytest.raises(IdxFormatError, match="1 trailing bytes"):
        read_idx(write(tmp_path, data))


def test_header_claiming_fewer_items_than_present_is_rejected(tmp_path: Path) -> None:
    data = idx_bytes(np.zeros((4, 2, 2), dtype=np.uint8), shape=(3, 2, 2))
    with pytest.raises(IdxFormatError, match="trailing bytes"):
        read_idx(write(tmp_path, data))


@pytest.mark.parametrize("magic", [b"\x01\x00", b"\x00\x01", b"\x1f\x8b"])
def test_bad_magic_is_rejected(tmp_path: Path, magic: bytes) -> None:
    data = magic + idx_bytes(np.zeros(3, dtype=np.uint8))[2:]
    with pytest.raises(IdxFormatError, match="bad magic number"):
        read_idx(write(tmp_path, data))


def test_gzip_file_is_rejected_as_bad_magic(tmp_path: Path) -> None:
    data = gzip.compress(idx_bytes(np.zeros(3, dtype=np.uint8)))
    with pytest.raises(IdxFormatError, match="bad magic number 0x1f8b"):
        read_idx(write(tmp_path, data))


@pytest.mark.parametrize("code", [0x00, 0x07, 0x0A, 0x0F, 0xFF])
def test_unknown_dtype_code_is_rejected(tmp_path: Path, code: int) -> None:
    data = idx_bytes(np.zeros(3, dtype=np.uint8), code=code)
    with pytest.raises(IdxFormatError, match=f"unknown IDX dtype code 0x{code:02x}"):
        read_idx(write(tmp_path, data))


@pytest.mark.parametrize("ndim", [0, 5, 255])
def test_dimension_count_outside_one_to_four_is_rejected(tmp_path: Path, ndim: int) -> None:
    data = bytes([0, 0, 0x08, ndim]) + b"\x00\x00\x00\x01" * ndim + b"\x00"
    with pytest.raises(IdxFormatError, match=f"{ndim} dimensions, expected 1 to 4"):
        read_idx(write(tmp_path, data))


def test_huge_header_fails_fast_without_allocating(tmp_path: Path) -> None:
    huge = (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    data = bytes([0, 0, 0x0E, 4]) + b"".join(size.to_bytes(4, "big") for size in huge) + bytes(64)
    path = write(tmp_path, data)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(IdxFormatError, match="more than the 1073741824 this pipeline reads"):
            read_idx(path)
        with pytest.raises(IdxFormatError, match="more than the 1073741824 this pipeline reads"):
            parse_idx(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    assert time.perf_counter() - started < 1.0


def test_format_error_is_a_pipeline_error_and_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(PipelineError):
        read_idx(write(tmp_path, b"\x01\x02\x03\x04"))
    with pytest.raises(ValueError):
        parse_idx(b"\x01\x02\x03\x04")


def test_missing_file_is_a_pipeline_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"cannot read .*absent-idx"):
        read_idx(tmp_path / "absent-idx")


def test_valid_pair_is_read(tmp_path: Path) -> None:
    images = np.full((3, 4, 5), 255, dtype=np.uint8)
    labels = np.array([0, 9, 3], dtype=np.uint8)
    got_images, got_labels = read_pair(
        write(tmp_path, idx_bytes(images), "i"), write(tmp_path, idx_bytes(labels), "l")
    )
    assert got_images.shape == (3, 4, 5) and got_labels.tolist() == [0, 9, 3]


def test_label_out_of_range_is_rejected_naming_the_labels_file(tmp_path: Path) -> None:
    images = write(tmp_path, idx_bytes(np.zeros((3, 2, 2), dtype=np.uint8)), "imgs")
    labels = write(tmp_path, idx_bytes(np.array([0, 10, 3], dtype=np.uint8)), "lbls")
    with pytest.raises(IdxFormatError, match=r"lbls: label 10 outside 0\.\.9"):
        read_pair(images, labels)


def test_negative_label_is_rejected() -> None:
    with pytest.raises(IdxFormatError, match="label -1 outside"):
        validate_pair(np.zeros((2, 2, 2), np.uint8), np.array([0, -1], np.int8), "i", "l")


def test_image_label_count_mismatch_is_rejected(tmp_path: Path) -> None:
    images = write(tmp_path, idx_bytes(np.zeros((3, 2, 2), dtype=np.uint8)), "imgs")
    labels = write(tmp_path, idx_bytes(np.array([0, 1], dtype=np.uint8)), "lbls")
    with pytest.raises(IdxFormatError, match=r"lbls: 2 labels for 3 images in .*imgs"):
        read_pair(images, labels)


@pytest.mark.parametrize("shape", [(6,), (2, 3), (2, 2, 2, 2), (0, 28, 28), (3, 0, 28)])
def test_images_that_are_not_non_empty_n_h_w_are_rejected(shape: tuple[int, ...]) -> None:
    labels = np.zeros(shape[0] if shape else 0, dtype=np.uint8)
    with pytest.raises(IdxFormatError, match=r"imgs: expected non-empty images of shape \(n, h, w\)"):
        validate_pair(np.zeros(shape, dtype=np.uint8), labels, "imgs", "lbls")


def test_labels_that_are_not_one_dimensional_integers_are_rejected() -> None:
    images = np.zeros((2, 2, 2), dtype=np.uint8)
    with pytest.raises(IdxFormatError, match=r"expected labels of shape \(n,\)"):
        validate_pair(images, np.zeros((2, 1), dtype=np.uint8), "i", "l")
    with pytest.raises(IdxFormatError, match="labels must be integers"):
        validate_pair(images, np.zeros(2, dtype=np.float32), "i", "l")


arrays = st.sampled_from(sorted(CODES, key=str)).flatmap(
    lambda dtype: st.lists(st.integers(0, 4), min_size=1, max_size=4).flatmap(
        lambda shape: st.binary(
            min_size=dtype.itemsize * int(np.prod(shape)), max_size=dtype.itemsize * int(np.prod(shape))
        ).map(lambda raw: np.frombuffer(raw, dtype=dtype).reshape(shape))
    )
)


@given(arrays)
def test_any_valid_array_round_trips(array: np.ndarray) -> None:
    result = parse_idx(idx_bytes(array))
    assert result.shape == array.shape and result.dtype == array.dtype
    assert result.tobytes() == array.tobytes()


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(arrays, st.data())
def test_mutated_files_give_a_format_error_or_a_consistent_array(
    array: np.ndarray, data: st.DataObject
) -> None:
    original = bytearray(idx_bytes(array))
    mutation = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if mutation == "flip" and original:
        position = data.draw(st.integers(0, len(original) - 1))
        original[position] = data.draw(st.integers(0, 255))
    elif mutation == "truncate":
        del original[data.draw(st.integers(0, len(original))):]
    else:
        original += data.draw(st.binary(max_size=8))
    mutated = bytes(original)
    try:
        result = parse_idx(mutated)
    except IdxFormatError:
        return
    assert 4 + 4 * result.ndim + result.nbytes == len(mutated)


@given(st.binary(max_size=64))
def test_random_bytes_never_raise_anything_but_a_format_error(data: bytes) -> None:
    with contextlib.suppress(IdxFormatError):
        parse_idx(data)


MNIST_FILES = DATASETS["mnist"].files


def sparse_idx(tmp_path: Path, shape: tuple[int, ...], code: int = 0x08, name: str = "sparse-idx") -> Path:
    """An IDX file whose header claims ``shape`` and whose size is exactly that (zeros in a sparse file, no disk)."""
    header = bytes([0, 0, code, len(shape)]) + b"".join(size.to_bytes(4, "big") for size in shape)
    path = tmp_path / name
    path.write_bytes(header)
    count = 1
    for size in shape:
        count *= size
    os.truncate(path, len(header) + count * DTYPES[code].itemsize)
    return path


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_pinned_size_of_every_dataset_file_is_its_header_plus_its_pinned_shape(dataset: str) -> None:
    for idx_file in DATASETS[dataset].files.values():
        assert idx_file.shape is not None
        assert idx_file.size == 4 + 4 * len(idx_file.shape) + int(np.prod(idx_file.shape)), idx_file.name


# case -> (the role the file is read as, the shape its header claims, its dtype code)
WRONG_SHAPES = {
    "claims-2-to-the-31-images": ("train_images", (2**31, 28, 28), 0x08),
    "one-image-too-many": ("train_images", (60_001, 28, 28), 0x08),
    "wrong-image-side": ("train_images", (60_000, 27, 27), 0x08),
    "images-not-square": ("test_images", (10_000, 28, 29), 0x08),
    "wrong-label-count": ("train_labels", (59_999,), 0x08),
    "test-labels-of-train-size": ("test_labels", (60_000,), 0x08),
    "labels-file-read-as-images": ("train_images", (60_000,), 0x08),
    "images-file-read-as-labels": ("train_labels", (60_000, 28, 28), 0x08),
    "train-images-read-as-test-images": ("test_images", (60_000, 28, 28), 0x08),
    "float-images": ("test_images", (10_000, 28, 28), 0x0D),
}


@pytest.mark.parametrize(("role", "shape", "code"), WRONG_SHAPES.values(), ids=WRONG_SHAPES.keys())
def test_file_of_a_known_dataset_with_another_shape_is_refused_before_anything_is_allocated(
    tmp_path: Path, role: str, shape: tuple[int, ...], code: int
) -> None:
    """Each file's size matches its header, so only the dataset's pinned shape can tell it is wrong."""
    expected = MNIST_FILES[role]  # type: ignore[index]
    path = sparse_idx(tmp_path, shape, code)
    tracemalloc.start()
    try:
        with pytest.raises(IdxFormatError) as raised:
            read_idx(path, expected)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and str(shape) in message and str(expected.shape) in message, message
    assert expected.name in message


def test_file_of_the_pinned_shape_is_read(tmp_path: Path) -> None:
    labels = read_idx(sparse_idx(tmp_path, (10_000,)), MNIST_FILES["test_labels"])
    assert labels.shape == (10_000,) and labels.dtype == np.uint8


def test_any_file_declaring_more_data_than_the_pipeline_can_hold_is_refused_without_allocating(
    tmp_path: Path,
) -> None:
    path = sparse_idx(tmp_path, (2**31, 28, 28))
    tracemalloc.start()
    try:
        with pytest.raises(IdxFormatError, match=r"declares 1683627180032 bytes of data, more than the 1073741824"):
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
