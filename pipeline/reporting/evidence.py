"""Gather what the report page shows beyond the figures: baseline deltas, the run's link, per-class −ELBO, the card.

Every source is optional, so a report drawn by hand without them still renders: a missing per-class CSV drops
the bar chart, a missing ``dvc.lock`` leaves the card's digests empty, a baseline that git cannot give shows as
a sentence. The baseline is the metrics file committed at ``HEAD``, as ``python -m pipeline check`` takes it by
default; it is not a DVC dependency, so the page names the commit it compared with.
"""

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.core.model_kind import model_kind
from pipeline.core.params import Params
from pipeline.core.paths import CLASSIFIER_METRICS_FILE, DATA_STATS_FILE, PER_CLASS_FILE
from pipeline.gate.baseline import CannotCompareError, commit_of, read_baseline
from pipeline.gate.comparison import compare_metrics
from pipeline.reporting.model_card import CardInputs, Lineage, render_model_card
from pipeline.reporting.page_sections import Deltas, Evidence

if TYPE_CHECKING:
    from pipeline.tracking.run_file import RunRef

BASELINE = "HEAD"


@dataclass(frozen=True)
class EvidenceSources:
    """Where the report finds its evidence; the stage passes dvc.yaml's paths."""

    per_class: Path = PER_CLASS_FILE
    classifier_metrics: Path = CLASSIFIER_METRICS_FILE
    data_stats: Path = DATA_STATS_FILE
    lock: Path = Path("dvc.lock")


def _json(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def per_class_rows(path: Path) -> list[tuple[str, float]]:
    """``(class name, test −ELBO)`` from evaluate's CSV; empty when it is absent or unreadable."""
    try:
        with open(path, encoding="utf-8", newline="") as stream:
            return [(row["class_name"], float(row["test_neg_elbo"])) for row in csv.DictReader(stream)]
    except (OSError, ValueError, KeyError):
        return []


def deltas(params: Params, metrics_file: Path, metrics: Mapping[str, float]) -> Deltas:
    """The gate's rows of ``metrics`` against those committed at ``HEAD``, labelled with the commit."""
    try:
        label, baseline = read_baseline(BASELINE, metrics_file)
        label = f"{label} ({commit_of(BASELINE, metrics_file)[:10]})"
    except CannotCompareError as error:
        return Deltas(BASELINE, missing=str(error))
    numbers = {name: value for name, value in metrics.items() if isinstance(value, (int, float))}
    return Deltas(label, compare_metrics(baseline, numbers, params.check.tolerances))


def run_url(ref: "RunRef") -> str | None:
    """The run's page on a tracking server; ``None`` for a local store, which has no address to link."""
    if not ref.tracking_uri.startswith(("http://", "https://")):
        return None
    return f"{ref.tracking_uri.rstrip('/')}/#/experiments/{ref.experiment_id}/runs/{ref.run_id}"


def gather_evidence(params: Params, sources: EvidenceSources, ref: "RunRef", metrics_file: Path,
                    metrics: Mapping[str, Any], num_classes: int, latent_dim: int, test_count: int) -> Evidence:
    """Everything the page and the model card need, read from files, git and the MLflow registry."""
    from dataclasses import asdict

    from pipeline.tracking import registry
    from pipeline.tracking.store import TrackingError

    try:
        lock_text = sources.lock.read_text(encoding="utf-8")
        lineage = Lineage.from_lock(lock_text)
    except (OSError, ValueError):
        lineage = Lineage({}, {})
    try:
        versions = registry.history(params.check.registered_models.model_dump())
    except TrackingError:
        versions = []
    numbers = {name: value for name, value in metrics.items() if isinstance(value, (int, float))}
    accuracy = _json(sources.classifier_metrics).get("test_accuracy")
    card = render_model_card(CardInputs(
        params=params, kind=model_kind(num_classes), latent_dim=latent_dim, lineage=lineage, metrics=numbers,
        run=asdict(ref), registry=versions, classifier_accuracy=accuracy, data_stats=_json(sources.data_stats),
        test_count=test_count))
    return Evidence(deltas(params, metrics_file, numbers), run_url(ref), card, per_class_rows(sources.per_class))
