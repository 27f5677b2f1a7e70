"""Fixtures shared by the test tiers."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist"


def _mnist_folder() -> Path:
    """``$MNIST_MIRROR`` when it names a folder (relative to the repository root), else ``../shared``."""
    mirror = os.environ.get("MNIST_MIRROR", "")
    if mirror and "://" not in mirror.removeprefix("file://"):
        folder = Path(mirror.removeprefix("file://"))
        return folder if folder.is_absolute() else REPO_ROOT / folder
    return SHARED_MNIST


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST mirror folder; skip where this machine has none, but never in CI."""
    folder = _mnist_folder()
    if not folder.is_dir():
        message = f"real MNIST files not found at {folder} (set MNIST_MIRROR to a folder of the four .gz files)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return folder
