"""Per-epoch checkpoints, so a killed training resumes where it stopped and ends identically.

A checkpoint holds every model variable (the sampling layer's seed state included), every
optimizer variable and the history so far, under a fingerprint of the config and data: a
checkpoint from other params or data is never resumed. Written atomically after each epoch.
"""

import hashlib
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.core import atomic_files
from pipeline.core.metrics import EpochLogs


class Variable(Protocol):
    """What a Keras variable offers that a checkpoint needs."""

    def numpy(self) -> np.ndarray: ...

    def assign(self, value: np.ndarray) -> object: ...


def fingerprint(config: object, *data: np.ndarray) -> str:
    """A digest of the training config and the training data (images, and labels when they are an input)."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for array in data:
        digest.update(repr((array.shape, array.dtype.str)).encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


@dataclass(frozen=True)
class EpochCheckpoint:
    """One checkpoint file for one training, identified by ``fingerprint``."""

    path: Path
    fingerprint: str

    def save(self, variables: Sequence[Variable], history: Sequence[EpochLogs]) -> None:
        """Store ``variables`` and ``history`` after an epoch."""
        arrays: dict[str, Any] = {f"v{index}": variable.numpy() for index, variable in enumerate(variables)}
        meta = json.dumps({"fingerprint": self.fingerprint, "history": list(history)})
        with atomic_files.atomic_path(self.path) as temporary:
            np.savez(temporary, meta=np.array(meta), **arrays)

    def restore(self, variables: Sequence[Variable]) -> list[EpochLogs]:
        """Load a matching checkpoint into ``variables`` and return its history; ``[]`` if none matches."""
        if not self.path.is_file():
            return []
        try:
            with np.load(self.path) as stored:
                meta = json.loads(str(stored["meta"]))
                arrays = [stored[f"v{index}"] for index in range(len(stored.files) - 1)]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return []  # unreadable: start afresh
        if meta.get("fingerprint") != self.fingerprint or not _fits(arrays, variables):
            return []  # other params, data or model code: start afresh
        for variable, value in zip(variables, arrays, strict=True):
            variable.assign(value)
        return meta["history"]

    def remove(self) -> None:
        """Delete the checkpoint once the final model is saved."""
        self.path.unlink(missing_ok=True)


def _fits(arrays: Sequence[np.ndarray], variables: Sequence[Variable]) -> bool:
    """Whether ``arrays`` are one per variable, each of its shape and dtype."""
    current = [variable.numpy() for variable in variables]
    return len(arrays) == len(current) and all(
        array.shape == value.shape and array.dtype == value.dtype
        for array, value in zip(arrays, current, strict=True)
    )
