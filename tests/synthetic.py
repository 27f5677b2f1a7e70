"""Small synthetic data shared by the tests that train: quick to learn, no files needed."""

import numpy as np


def synthetic_digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ten binary prototypes with 5 % of pixels flipped: float32 rows in [0, 1] and uint8 labels."""
    rng = np.random.default_rng(seed)
    prototypes = np.random.default_rng(0).random((10, 784)) < 0.2
    labels = (np.arange(count) % 10).astype(np.uint8)
    flips = rng.random((count, 784)) < 0.05
    return (prototypes[labels] ^ flips).astype(np.float32), labels
