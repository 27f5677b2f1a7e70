"""The prepare stage: scaling, the stratified split, data stats, the .npz format, and a run on real MNIST."""

import gzip
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.errors import PipelineError
from pipeline.data.datasets import DATASETS
from pipeline.data.splits import PreparedDataError, load_split, save_split
from pipeline.prepare import (
    SplitError,
    main,
    pixel_moments,
    scale,
    split_stats,
    stratified_split,
    validation_quotas,
)

MNIST = DATASETS["mnist"]


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(size.to_bytes(4, "big") for size in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_raw(raw_dir: Path, n_train: int = 200, n_test: int = 50, side: int = 4, seed: int = 0) -> None:
    """A tiny synthetic MNIST laid out as the download stage leaves it: ``<raw>/mnist/<name>``."""
    rng = np.random.default_rng(seed)
    folder = raw_dir / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, side, side)),
        "train_labels": np.arange(n_train) % 10,
        "test_images": rng.integers(0, 256, (n_test, side, side)),
        "test_labels": np.arange(n_test) % 10,
    }
    for role, array in arrays.items():
        (folder / MNIST.files[role].name).write_bytes(idx_bytes(array))  # type: ignore[index]


@pytest.fixture
def tiny_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    """Describe "mnist" with the shapes ``write_raw`` gives its files, as prepare checks each file's shape."""
    shapes = {"train_images": (200, 4, 4), "train_labels": (200,), "test_images": (50, 4, 4), "test_labels": (50,)}
    files = {role: replace(idx_file, shape=shapes[role]) for role, idx_file in MNIST.files.items()}
    monkeypatch.setitem(DATASETS, "mnist", replace(MNIST, files=files))


def run_prepare(tmp_path: Path, raw: Path, val_fraction: float, seed: int = 42) -> tuple[int, Path, Path]:
    params = tmp_path / "params.yaml"
    params.write_text(f"data:\n  dataset: mnist\n  val_fraction: {val_fraction}\n  seed: {seed}\n")
    out, stats = tmp_path / "prepared", tmp_path / "reports" / "data_stats.json"
    code = main(["--params", str(params), "--raw", str(raw), "--out", str(out), "--stats", str(stats)])
    return code, out, stats


def test_scale_gives_float32_rows_in_unit_range() -> None:
    images = np.array([[[0, 255], [51, 102]], [[255, 255], [0, 0]]], dtype=np.uint8)
    x = scale(images)
    assert x.dtype == np.float32 and x.shape == (2, 4)
    np.testing.assert_array_equal(x[0], np.array([0.0, 1.0, 0.2, 0.4], dtype=np.float32))
    assert x.min() == 0.0 and x.max() == 1.0


def test_quotas_add_up_to_the_rounded_fraction_and_keep_each_class_proportion() -> None:
    counts = np.array([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    quotas = validation_quotas(counts, 0.1)
    assert quotas.sum() == 6000
    assert np.all(np.abs(quotas - counts * 0.1) < 1)


def test_split_is_disjoint_complete_sorted_and_stratified() -> None:
    labels = np.repeat(np.arange(10), [50, 80, 30, 120, 60, 70, 40, 90, 100, 60]).astype(np.uint8)
    np.random.default_rng(1).shuffle(labels)
    train, val = stratified_split(labels, 0.25, seed=3)
    assert len(np.intersect1d(train, val)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(len(labels)))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    assert len(val) == round(0.25 * len(labels))
    expected = np.bincount(labels) * 0.25
    assert np.all(np.abs(np.bincount(labels[val], minlength=10) - expected) < 1)


def test_split_is_deterministic_for_a_seed_and_changes_with_it() -> None:
    labels = (np.arange(1000) % 10).astype(np.uint8)
    first, second = stratified_split(labels, 0.1, seed=42), stratified_split(labels, 0.1, seed=42)
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[1], stratified_split(labels, 0.1, seed=43)[1])


def test_zero_fraction_keeps_everything_in_train() -> None:
    labels = (np.arange(30) % 10).astype(np.uint8)
    train, val = stratified_split(labels, 0.0, seed=0)
    np.testing.assert_array_equal(train, np.arange(30))
    assert val.size == 0


@pytest.mark.parametrize(
    ("fraction", "message"), [(0.01, "no validation"), (0.99, "no training"), (1.0, r"\[0, 1\)")]
)
def test_fraction_that_empties_a_split_is_rejected(fraction: float, message: str) -> None:
    with pytest.raises(SplitError, match=message):
        stratified_split(np.array([0, 1, 2], dtype=np.uint8), fraction, seed=0)


def test_pixel_moments_match_numpy_across_chunk_boundaries() -> None:
    x = np.random.default_rng(0).random((10_000, 7), dtype=np.float32)
    mean, std = pixel_moments(x)
    assert mean == pytest.approx(float(x.astype(np.float64).mean()), abs=1e-12)
    assert std == pytest.approx(float(x.astype(np.float64).std()), abs=1e-12)


def test_split_stats_count_every_class_including_absent_ones() -> None:
    x = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 1.0]], dtype=np.float32)
    stats = split_stats(x, np.array([2, 2, 0], dtype=np.uint8), num_classes=4)
    assert stats["count"] == 3
    assert stats["class_counts"] == {"0": 1, "1": 0, "2": 2, "3": 0}
    assert stats["pixel_mean"] == pytest.approx(4 / 6, abs=1e-6)
    assert stats["pixel_std"] == pytest.approx(float(np.std(x)), abs=1e-6)


def test_stage_writes_splits_and_stats_and_removes_a_stale_val(tmp_path: Path, tiny_mnist: None) -> None:
    raw = tmp_path / "raw"
    write_raw(raw)
    code, out, stats_path = run_prepare(tmp_path, raw, 0.2)
    assert code == 0
    x_val, y_val = load_split(out, "val")
    assert x_val.shape == (40, 16) and np.bincount(y_val).tolist() == [4] * 10
    stats = json.loads(stats_path.read_text())
    assert (stats["dataset"], stats["train"]["count"], stats["val"]["count"], stats["test"]["count"]) == (
        "mnist", 160, 40, 50
    )
    code, out, stats_path = run_prepare(tmp_path, raw, 0.0)
    assert code == 0
    assert sorted(path.name for path in out.iterdir()) == ["test.npz", "train.npz"]
    assert "val" not in json.loads(stats_path.read_text())
    x, y = load_split(out, "train")
    assert x.shape == (200, 16) and y.tolist() == (np.arange(200) % 10).tolist()


def test_stage_reports_a_missing_raw_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_mnist: None
) -> None:
    raw = tmp_path / "raw"
    write_raw(raw)
    (raw / "mnist" / "t10k-labels-idx1-ubyte").unlink()
    code, _, stats = run_prepare(tmp_path, raw, 0.0)
    error = capsys.readouterr().err
    assert code == 1 and not stats.exists()
    assert error.startswith("prepare: error: ") and "t10k-labels-idx1-ubyte not found" in error
    assert error.count("\n") == 1


def test_stage_rejects_a_corrupt_raw_file(tmp_path: Path, tiny_mnist: None, capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "raw"
    write_raw(raw)
    images = raw / "mnist" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-5])
    code, _, _ = run_prepare(tmp_path, raw, 0.0)
    assert code == 1 and "train-images-idx3-ubyte: truncated" in capsys.readouterr().err


def test_stage_refuses_a_sparse_file_of_exactly_the_claimed_size_of_2_to_the_31_images_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reported case: the header matched the file's size, so prepare tried to allocate 1.5 TiB."""
    raw = tmp_path / "raw"
    write_raw(raw)
    images = raw / "mnist" / MNIST.files["train_images"].name
    header = bytes([0, 0, 0x08, 3]) + b"".join(size.to_bytes(4, "big") for size in (2**31, 28, 28))
    images.write_bytes(header)
    os.truncate(images, len(header) + 2**31 * 28 * 28)
    code, out, stats = run_prepare(tmp_path, raw, 0.0)
    error = capsys.readouterr().err
    assert code == 1 and not stats.exists() and not out.exists()
    assert error == (f"prepare: error: {images}: header declares shape (2147483648, 28, 28) of uint8, but "
                     "train-images-idx3-ubyte of mnist is (60000, 28, 28) of uint8; download it again\n")


def test_load_split_round_trips_what_save_split_wrote(tmp_path: Path) -> None:
    x, y = np.full((3, 5), 0.5, dtype=np.float32), np.array([1, 2, 3], dtype=np.uint8)
    path = save_split(tmp_path, "train", x, y)
    assert path == tmp_path / "train.npz" and [p.name for p in tmp_path.iterdir()] == ["train.npz"]
    got_x, got_y = load_split(tmp_path, "train")
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y)


def test_load_split_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PreparedDataError, match=r"val\.npz not found"):
        load_split(tmp_path, "val")


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((2, 4), np.float32)}, r"missing array\(s\) \['y'\]"),
        ({"x": np.zeros((2, 4), np.float64), "y": np.zeros(2, np.uint8)}, "x must be a 2-D float32"),
        ({"x": np.zeros((2, 2, 2), np.float32), "y": np.zeros(2, np.uint8)}, "x must be a 2-D float32"),
        ({"x": np.zeros((2, 4), np.float32), "y": np.zeros(3, np.uint8)}, r"y must be uint8 of shape \(2,\)"),
        ({"x": np.zeros((2, 4), np.float32), "y": np.zeros(2, np.int64)}, "y must be uint8"),
    ],
)
def test_load_split_rejects_malformed_arrays(
    tmp_path: Path, arrays: dict[str, np.ndarray], message: str
) -> None:
    np.savez_compressed(tmp_path / "train.npz", **arrays)  # type: ignore[arg-type]
    with pytest.raises(PreparedDataError, match=f"train.npz: {message}"):
        load_split(tmp_path, "train")


@pytest.mark.parametrize("content", [b"not a zip", b"PK\x03\x04 truncated"])
def test_load_split_rejects_a_file_that_is_not_an_npz(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "test.npz").write_bytes(content)
    with pytest.raises(PipelineError, match=r"test\.npz: not a readable \.npz file"):
        load_split(tmp_path, "test")


@pytest.fixture(scope="module")
def real_raw(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four real MNIST files, decompressed the way the download stage stores them."""
    raw = tmp_path_factory.mktemp("raw")
    (raw / "mnist").mkdir()
    for idx_file in MNIST.files.values():
        with gzip.open(mnist_dir / idx_file.gz_name) as source:
            (raw / "mnist" / idx_file.name).write_bytes(source.read())
    return raw


@pytest.mark.integration
def test_real_mnist_keeps_the_60000_10000_split(real_raw: Path, tmp_path: Path) -> None:
    code, out, stats_path = run_prepare(tmp_path, real_raw, 0.0)
    assert code == 0
    stats = json.loads(stats_path.read_text())
    for name, count in (("train", 60_000), ("test", 10_000)):
        x, y = load_split(out, name)
        assert x.shape == (count, 784) and x.dtype == np.float32 and y.dtype == np.uint8
        assert x.min() == 0.0 and x.max() == 1.0
        assert stats[name]["count"] == count == sum(stats[name]["class_counts"].values())
        counts = np.bincount(y, minlength=10)
        assert stats[name]["class_counts"] == {str(label): int(n) for label, n in enumerate(counts)}
    assert stats["train"]["class_counts"]["1"] == 6742
    assert stats["train"]["pixel_mean"] == pytest.approx(0.1307, abs=1e-4)
    assert stats["train"]["pixel_std"] == pytest.approx(0.3081, abs=1e-4)
    assert not (out / "val.npz").exists() and "val" not in stats


@pytest.mark.integration
def test_real_mnist_val_fraction_gives_a_stratified_54000_6000_split(real_raw: Path, tmp_path: Path) -> None:
    code, out, stats_path = run_prepare(tmp_path, real_raw, 0.1)
    assert code == 0
    stats = json.loads(stats_path.read_text())
    (x_train, y_train), (x_val, y_val) = load_split(out, "train"), load_split(out, "val")
    assert x_train.shape == (54_000, 784) and x_val.shape == (6_000, 784)
    assert load_split(out, "test")[0].shape == (10_000, 784)
    full = np.bincount(y_train, minlength=10) + np.bincount(y_val, minlength=10)
    assert full.sum() == 60_000 and full[1] == 6742
    assert np.all(np.abs(np.bincount(y_val, minlength=10) - full * 0.1) < 1)
    assert (stats["train"]["count"], stats["val"]["count"]) == (54_000, 6_000)
