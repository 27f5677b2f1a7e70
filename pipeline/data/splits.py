"""The prepared-data format shared by the prepare stage (writer) and the later stages (readers).

Each split is ``<prepared_dir>/<name>.npz``, compressed, holding ``x`` (float32, n x pixels,
values in [0, 1]) and ``y`` (uint8 class labels, n).
"""

import zipfile
import zlib
from pathlib import Path

import numpy as np

from pipeline.core.atomic_files import atomic_path
from pipeline.core.errors import PipelineError, require_output

PIXEL_DTYPE = np.dtype("float32")
"""The float type of the data contract: prepared images, and every tensor the model computes (``pipeline.model``)."""


class PreparedDataError(PipelineError):
    """A prepared split is missing or does not hold the arrays the pipeline expects."""


def split_path(prepared_dir: Path, name: str) -> Path:
    """Where the split ``name`` lives."""
    return Path(prepared_dir) / f"{name}.npz"


def save_split(prepared_dir: Path, name: str, x: np.ndarray, y: np.ndarray) -> Path:
    """Write one split atomically; return its path."""
    target = split_path(prepared_dir, name)
    with atomic_path(target) as temporary:
        np.savez_compressed(temporary, x=x, y=y)
    return target


def load_split(prepared_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one split as ``(x, y)``; raise ``PreparedDataError`` naming the file if missing or malformed."""
    path = split_path(prepared_dir, name)
    require_output(path, "prepare", PreparedDataError)
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = {"x", "y"} - set(archive.files)
            if missing:
                raise PreparedDataError(f"{path}: missing array(s) {sorted(missing)}")
            x, y = archive["x"], archive["y"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise PreparedDataError(f"{path}: not a readable .npz file ({error})") from None
    if x.dtype != PIXEL_DTYPE or x.ndim != 2:
        raise PreparedDataError(f"{path}: x must be a 2-D {PIXEL_DTYPE} array, got {x.dtype} of shape {x.shape}")
    if y.dtype != np.uint8 or y.shape != (x.shape[0],):
        raise PreparedDataError(
            f"{path}: y must be uint8 of shape ({x.shape[0]},), got {y.dtype} of shape {y.shape}"
        )
    return x, y
