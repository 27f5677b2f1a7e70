"""The sample metrics on real MNIST behave as a measure of sample quality must: 0 for the same images, small
for other real ones, rising with every step of noise, blur or class-mix shift. Uses the sanity benchmark's own
cases (benchmarks/sample_metric_sanity.py) with a classifier trained here, on 2 000 test images."""

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO_ROOT

from pipeline.core.params import parse_params
from pipeline.data.datasets import DATASETS
from pipeline.prepare import load_raw, scale

COUNT = 2000
BENCHMARK = REPO_ROOT / "benchmarks" / "sample_metric_sanity.py"


def sanity_module():
    spec = importlib.util.spec_from_file_location("sample_metric_sanity", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rows(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[str, float, float]]]:
    """``case → [(level, FID, recall), ...]`` in the order of increasing damage."""
    spec = DATASETS["mnist"]
    raw = tmp_path_factory.mktemp("raw")
    (raw / "mnist").mkdir()
    for idx_file in spec.files.values():
        with gzip.open(mnist_dir / idx_file.gz_name) as source:
            (raw / "mnist" / idx_file.name).write_bytes(source.read())
    data = load_raw(raw, spec)
    train, train_labels = scale(data["train"][0]), data["train"][1]
    test = scale(data["test"][0])[:COUNT]
    from pipeline.sample_quality.classifier import ClassifierConfig, FeatureExtractor, train_classifier

    config = ClassifierConfig.from_params(parse_params({"classifier": {"epochs": 1}}), len(spec.class_names))
    extractor = FeatureExtractor(train_classifier(train, train_labels, config))
    grouped: dict[str, list[tuple[str, float, float]]] = {}
    for case, level, fid, _, recall in sanity_module().sanity_rows(lambda images: extractor.read(images)[0],
                                                                   test, train, train_labels):
        grouped.setdefault(case, []).append((level, fid, recall))
    return grouped


@pytest.mark.integration
def test_the_same_images_score_zero_and_other_real_images_little(rows: dict) -> None:
    (_, same, same_recall), = rows["same test images"]
    (_, other, other_recall), = rows["other real images (train)"]
    assert same == pytest.approx(0.0, abs=1e-6) and same_recall == 1.0
    # At 2 000 images the floor is about 5 × its value at 10 000 (0.72): FID's bias goes as 1/N, and the
    # mildest damage (σ = 0.05 noise, 10 % more 1s) hides under it; the rest of each case rises above it.
    assert 0 < other < min(values[-1][1] for values in rows.values() if len(values) > 1) / 3
    assert other_recall > 0.7


@pytest.mark.integration
@pytest.mark.parametrize("case", ["pixel noise", "blur", "class mix shifted to 1s"])
def test_fid_rises_with_every_step_of_damage(rows: dict, case: str) -> None:
    values = [fid for _, fid, _ in rows[case]]
    assert values == sorted(values) and len(set(values)) == len(values), values
    assert values[-1] > 3 * rows["other real images (train)"][0][1]


@pytest.mark.integration
@pytest.mark.parametrize("case", ["pixel noise", "blur"])
def test_recall_collapses_as_the_damaged_images_leave_the_real_manifold(rows: dict, case: str) -> None:
    """Precision hardly moves (a blurred digit is still a digit to the classifier); recall does."""
    recalls = [recall for _, _, recall in rows[case]]
    assert recalls[-1] < 0.2 < recalls[0], recalls
    assert np.all(np.diff(recalls) <= 0.02), recalls
