"""Stage ``prepare``: parse the raw IDX files, scale pixels to [0, 1], split off validation, write .npz.

``python -m pipeline.prepare --params params.yaml --raw data/raw --out data/prepared
--stats reports/data_stats.json``

With ``data.val_fraction`` 0 the notebook's 60 000 train / 10 000 test split is kept and no
``val.npz`` is written (a stale one from an earlier run is removed). Above 0, a stratified,
seeded share of each class moves from train to ``val.npz``; the test set is never touched.
"""

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.atomic_files import write_json
from pipeline.core.cli import run_stage, stage_parser
from pipeline.core.errors import PipelineError, require_output
from pipeline.core.param_sections import DataParams
from pipeline.core.params import load_params
from pipeline.core.paths import DATA_STATS_FILE, PREPARED_DIR, RAW_DIR
from pipeline.data.datasets import DATASETS, DatasetSpec, Role
from pipeline.data.idx_format import IdxFormatError, read_pair
from pipeline.data.splits import save_split, split_path

RAW_SPLITS: tuple[tuple[str, Role, Role], ...] = (
    ("train", "train_images", "train_labels"),
    ("test", "test_images", "test_labels"),
)
STATS_CHUNK_ROWS = 4096


class SplitError(PipelineError, ValueError):
    """The validation fraction leaves the train or validation set empty."""


def load_raw(raw_dir: Path, spec: DatasetSpec) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read and cross-check ``{"train": (images, labels), "test": (...)}`` from ``<raw_dir>/<name>/``."""
    folder = Path(raw_dir) / spec.name
    raw = {}
    for split, images_role, labels_role in RAW_SPLITS:
        paths = [folder / spec.files[role].name for role in (images_role, labels_role)]
        for path in paths:
            require_output(path, "download")
        raw[split] = read_pair(paths[0], paths[1], num_classes=len(spec.class_names),
                               expected=(spec.files[images_role], spec.files[labels_role]))
    train_shape, test_shape = raw["train"][0].shape[1:], raw["test"][0].shape[1:]
    if train_shape != test_shape:
        raise IdxFormatError(f"{folder}: train images are {train_shape} but test images are {test_shape}")
    return raw


def scale(images: np.ndarray) -> np.ndarray:
    """uint8 images (n, h, w) as float32 rows (n, h * w) in [0, 1]."""
    flat = images.reshape(len(images), -1).astype(np.float32)
    flat /= np.float32(255)
    return flat


def validation_quotas(class_counts: np.ndarray, fraction: float) -> np.ndarray:
    """How many images of each class go to validation: ``round(fraction * total)`` in all,
    shared by largest remainder so each class keeps its proportion (ties go to the lower class)."""
    exact = class_counts * fraction
    quotas = np.floor(exact).astype(np.int64)
    remaining = round(fraction * int(class_counts.sum())) - int(quotas.sum())
    order = np.argsort(-(exact - quotas), kind="stable")
    quotas[order[:remaining]] += 1
    return quotas


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``(train_indices, val_indices)``: a seeded, per-class random ``fraction`` goes to validation.

    ``fraction`` 0 gives every index to train and none to validation.
    """
    if not 0.0 <= fraction < 1.0:
        raise SplitError(f"validation fraction must be in [0, 1), got {fraction}")
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quotas = validation_quotas(counts, fraction)
    total = int(quotas.sum())
    if fraction > 0 and total == 0:
        raise SplitError(f"data.val_fraction {fraction} of {len(labels)} images leaves no validation images")
    if total == len(labels):
        raise SplitError(f"data.val_fraction {fraction} of {len(labels)} images leaves no training images")
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(inverse == index))[:quota] for index, quota in enumerate(quotas)]
    val = np.sort(np.concatenate([np.empty(0, dtype=np.intp), *chosen]))
    keep = np.ones(len(labels), dtype=bool)
    keep[val] = False
    return np.flatnonzero(keep), val


def pixel_moments(x: np.ndarray) -> tuple[float, float]:
    """Mean and (population) standard deviation of all values, in float64, without a full-size temporary."""
    mean = float(x.sum(dtype=np.float64)) / x.size
    squares = 0.0
    for start in range(0, len(x), STATS_CHUNK_ROWS):
        centred = x[start:start + STATS_CHUNK_ROWS].astype(np.float64) - mean
        squares += float(np.dot(centred.ravel(), centred.ravel()))
    return mean, (squares / x.size) ** 0.5


def split_stats(x: np.ndarray, y: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Count, pixel mean and std, and per-class counts of one split."""
    mean, std = pixel_moments(x)
    class_counts = np.bincount(y, minlength=num_classes)
    return {
        "count": len(y),
        "pixel_mean": round(mean, 6),
        "pixel_std": round(std, 6),
        "class_counts": {str(label): int(count) for label, count in enumerate(class_counts)},
    }


def prepare(data: DataParams, raw_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Write ``train.npz``, ``test.npz`` and (for ``val_fraction`` > 0) ``val.npz``; return the data stats."""
    spec = DATASETS[data.dataset]
    num_classes = len(spec.class_names)
    raw = load_raw(raw_dir, spec)
    train_images, train_labels = raw.pop("train")
    train_indices, val_indices = stratified_split(train_labels, data.val_fraction, data.seed)
    splits = {"train": (train_images[train_indices], train_labels[train_indices]), "test": raw.pop("test")}
    if len(val_indices):
        splits["val"] = (train_images[val_indices], train_labels[val_indices])
    del train_images, train_labels
    stats: dict[str, Any] = {"dataset": spec.name}
    for name in list(splits):
        images, labels = splits.pop(name)
        x = scale(images)
        save_split(out_dir, name, x, labels)
        stats[name] = split_stats(x, labels, num_classes)
    if "val" not in stats:
        split_path(out_dir, "val").unlink(missing_ok=True)
    return stats


def _run(args: argparse.Namespace) -> None:
    data = load_params(args.params).data
    stats = prepare(data, args.raw, args.out)
    write_json(args.stats, stats)
    counts = ", ".join(f"{name} {stats[name]['count']}" for name in ("train", "val", "test") if name in stats)
    print(f"prepare: {stats['dataset']}: {counts} -> {args.out}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline prepare [options]``: parse ``argv``, run, return the exit code (0, 1, or 130)."""
    parser = stage_parser("prepare", "Parse, scale and split the dataset's IDX files into .npz arrays.")
    parser.add_argument("--raw", type=Path, default=RAW_DIR, help=f"raw IDX folder (default: {RAW_DIR})")
    parser.add_argument(
        "--out", type=Path, default=PREPARED_DIR, help=f"folder for the .npz splits (default: {PREPARED_DIR})"
    )
    parser.add_argument(
        "--stats", type=Path, default=DATA_STATS_FILE, help=f"statistics JSON (default: {DATA_STATS_FILE})"
    )
    return run_stage("prepare", _run, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
