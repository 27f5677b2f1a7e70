"""How the sample metrics behave on images whose quality we control: the numbers behind docs/evidence.md.

Real test images are compared with themselves, with other real images (training images: the floor at this
sample size), and with test images made worse step by step: Gaussian pixel noise, Gaussian blur, and a class
mix shifted towards one digit. FID must be 0 for the same set, small for other real images, and rise with
each step; precision falls as the images leave the real manifold. Uses the classifier stage's model and the
prepared data, so run ``dvc repro classifier`` first.

    uv run python benchmarks/sample_metric_sanity.py [--count 10000] [--markdown FILE]
"""

import argparse
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.core.paths import CLASSIFIER_FILE, PREPARED_DIR
from pipeline.data.splits import load_split
from pipeline.sample_quality.frechet import fid
from pipeline.sample_quality.manifold import precision_recall
from pipeline.sample_quality.scores import quantize

NOISE_LEVELS = (0.05, 0.1, 0.2, 0.4)
"""Standard deviations of added pixel noise, in grey-level units of [0, 1]."""
BLUR_LEVELS = (0.5, 1.0, 1.5, 2.0)
"""Standard deviations of the Gaussian blur, in pixels."""
CLASS_SHARES = (0.1, 0.25, 0.4, 0.6)
"""Shares of the set replaced by training images of ``SHIFTED_CLASS`` (MNIST has 6 742 training 1s: 60 % of 10 000)."""
SHIFTED_CLASS = 1
NEAREST_NEIGHBORS = 3


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Each 28 × 28 image (rows of 784) blurred by a separable Gaussian of ``sigma`` pixels, edges zero-padded."""
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    side = int(np.sqrt(images.shape[1]))
    boards = np.pad(images.reshape(-1, side, side), ((0, 0), (radius, radius), (radius, radius)))
    rows = sum(taps[i] * boards[:, i : i + side, :] for i in range(len(taps)))
    both = sum(taps[i] * rows[:, :, i : i + side] for i in range(len(taps)))
    return both.reshape(len(images), -1).astype(np.float32)


def noisy(images: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``images`` plus Gaussian noise of ``sigma``, clipped to [0, 1]."""
    return np.clip(images + rng.normal(0.0, sigma, images.shape), 0.0, 1.0).astype(np.float32)


def class_shifted(images: np.ndarray, share: float, pool: np.ndarray, pool_labels: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """``images`` with a random ``share`` of them replaced by pool images of ``SHIFTED_CLASS``."""
    count = int(round(share * len(images)))
    shifted = images.copy()
    chosen = rng.choice(np.flatnonzero(pool_labels == SHIFTED_CLASS), count, replace=False)
    shifted[rng.choice(len(images), count, replace=False)] = pool[chosen]
    return shifted


def cases(test: np.ndarray, train: np.ndarray, train_labels: np.ndarray,
          seed: int) -> Iterator[tuple[str, str, np.ndarray]]:
    """``(case, level, images)``: the sets compared with ``test``, in the order of the table."""
    rng = np.random.default_rng(seed)
    yield "same test images", "-", test
    yield "other real images (train)", "-", train[rng.choice(len(train), len(test), replace=False)]
    for sigma in NOISE_LEVELS:
        yield "pixel noise", f"σ = {sigma}", quantize(noisy(test, sigma, rng))
    for sigma in BLUR_LEVELS:
        yield "blur", f"σ = {sigma} px", quantize(gaussian_blur(test, sigma))
    for share in CLASS_SHARES:
        yield f"class mix shifted to {SHIFTED_CLASS}s", f"{share:.0%}", class_shifted(test, share, train,
                                                                                          train_labels, rng)


def sanity_rows(read_features, test: np.ndarray, train: np.ndarray, train_labels: np.ndarray,
                seed: int = 0) -> list[tuple[str, str, float, float, float]]:
    """``(case, level, FID, precision, recall)`` of each case against ``test``; ``read_features(images)`` gives
    the classifier's features."""
    reference = read_features(test)
    rows = []
    for case, level, images in cases(test, train, train_labels, seed):
        features = read_features(images)
        precision, recall = precision_recall(reference, features, NEAREST_NEIGHBORS)
        rows.append((case, level, fid(reference, features), precision, recall))
    return rows


def markdown(rows: list[tuple[str, str, float, float, float]], count: int) -> str:
    lines = [f"| {count} images against {count} test images | level | FID | precision | recall |",
             "|:--|:--|--:|--:|--:|"]
    lines += [f"| {case} | {level} | {value:.2f} | {precision:.3f} | {recall:.3f} |"
              for case, level, value, precision, recall in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="images per set (at most the test set's)")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args()
    from pipeline.sample_quality.classifier import load_classifier

    extractor = load_classifier(CLASSIFIER_FILE)
    test, _ = load_split(PREPARED_DIR, "test")
    train, train_labels = load_split(PREPARED_DIR, "train")
    table = markdown(sanity_rows(lambda images: extractor.read(images)[0], test[: args.count], train, train_labels),
                     args.count)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
