"""The model card of a run, ``reports/model_card.md``: rendered with jinja2 from what DVC and MLflow recorded.

Sources: ``dvc.lock`` (the digests of the data and code each stage read, and its params), the training
run and its logged models (``models/run.json``), the registry's versions and aliases
(``pipeline.tracking.registry.history``), and the evaluate stage's metrics, each with its unit, an anchor
that says what the number means, and its gate tolerance. The front matter is the Hugging Face model-card
metadata (``model-index`` with one result per metric), which their hub and tools such as
``huggingface_hub.ModelCard`` read. Pure functions: the caller gathers the inputs.
"""

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from pipeline.core.model_kind import LIKELIHOOD, NAMES, ModelKind
from pipeline.core.params import Params
from pipeline.core.strict_yaml import load_yaml

TEMPLATES = Path(__file__).parent / "templates"
DATA_STAGES = ("download", "prepare")
TRAIN_STAGE = "train"
METRIC_DECIMALS = 4
UNITS_AND_ANCHORS: dict[str, tuple[str, str]] = {
    "test_neg_elbo": ("nats per image", "−ELBO (β = 1), lower is better; the gate's main metric"),
    "test_nll_is": ("nats per image", "importance-sampled −log likelihood, at most test_neg_elbo; 1.4 nats below "
                                      "it at 2 latent dimensions in Davidson et al. (2018)"),
    "test_reconstruction_loss": ("nats per image", "binary cross-entropy summed over the 784 pixels"),
    "test_kl_loss": ("nats per image", "KL(q(z|x) ‖ N(0, I)), the code's cost"),
    "test_loss": ("nats per image", "the training objective with train.beta; the notebook printed ≈ 153 (train)"),
    "test_mse": ("per pixel", "squared error of the decoder mean at z_mean"),
    "active_units": ("latent dimensions", "dimensions whose z_mean varies over the test set (Burda et al. 2015)"),
    "sample_fid": ("squared feature units", "Fréchet distance of decoder samples to test images in the classifier's "
                                            "features; 0 for the same Gaussian, lower is better"),
    "sample_fid_low": ("squared feature units", "2.5th percentile of the FID over bootstrap resamples"),
    "sample_fid_high": ("squared feature units", "97.5th percentile of the FID over bootstrap resamples"),
    "sample_precision": ("share", "samples inside the test images' k-NN manifold (Kynkäänniemi et al. 2019), "
                                  "1 is best"),
    "sample_recall": ("share", "test images inside the samples' k-NN manifold, 1 is best; 0 for decoder means on a "
                               "2-D sheet, whose own k-NN balls are tiny"),
    "sample_coverage": ("share", "test images whose k-NN ball holds a sample (Naeem et al. 2020), 1 is best"),
    "sample_label_accuracy": ("share", "samples the classifier calls the label they were drawn for, 1 is best"),
}


@dataclass(frozen=True)
class Lineage:
    """What ``dvc.lock`` recorded: per stage, its dependencies' md5 digests and its params."""

    digests: dict[str, dict[str, str]]
    params: dict[str, dict[str, Any]]

    @classmethod
    def from_lock(cls, text: str) -> "Lineage":
        """Parse ``dvc.lock`` (schema 2.0); a stage not run yet is absent. ``ValueError`` for another layout."""
        lock = load_yaml(text) or {}
        if not isinstance(lock, Mapping) or not isinstance(lock.get("stages", {}), Mapping):
            raise ValueError("dvc.lock has no mapping of stages")
        digests, params = {}, {}
        for name, stage in lock.get("stages", {}).items():
            digests[name] = {dep["path"]: dep.get("md5", "") for dep in stage.get("deps", [])}
            params[name] = dict(stage.get("params", {}).get("params.yaml", {}))
        return cls(digests, params)

    def data(self) -> list[tuple[str, str]]:
        """The data the pipeline read, by path: its downloaded and prepared folders' digests."""
        return sorted({path: digest for stage in (*DATA_STAGES, TRAIN_STAGE)
                       for path, digest in self.digests.get(stage, {}).items() if path.startswith("data/")}.items())

    def code(self) -> list[tuple[str, str]]:
        """The training code, by path: the ``train`` stage's dependencies outside ``data/``."""
        return sorted((path, digest) for path, digest in self.digests.get(TRAIN_STAGE, {}).items()
                      if not path.startswith("data/"))


@dataclass(frozen=True)
class CardInputs:
    """Everything a card shows, gathered by the report stage."""

    params: Params
    kind: ModelKind
    latent_dim: int
    lineage: Lineage
    metrics: Mapping[str, float]
    run: Mapping[str, Any]
    """``models/run.json``: run_id, experiment_id, tracking_uri, models (name → model id)."""
    registry: Sequence[Any] = ()
    """``pipeline.tracking.registry.VersionRecord`` of the registered names, newest first."""
    classifier_accuracy: float | None = None
    data_stats: Mapping[str, Any] | None = None
    test_count: int = 0


def anchor_id(metric: str) -> str:
    """The HTML anchor of a metric's row, ``metric-test-neg-elbo``, so other pages can link to it."""
    return "metric-" + re.sub(r"[^a-z0-9]+", "-", metric.lower()).strip("-")


def _number(value: float) -> str:
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e6):
        return str(int(value))
    return format(value, f".{METRIC_DECIMALS}f") if math.isfinite(value) else str(value)


def metric_rows(metrics: Mapping[str, float], params: Params) -> list[dict[str, str]]:
    """One row per metric: name, value, unit, anchor, gate tolerance (or "not gated")."""
    rows = []
    for name, value in metrics.items():
        unit, anchor = UNITS_AND_ANCHORS.get(name, ("", ""))
        tolerance = params.check.tolerances.get(name)
        allowed = ("not gated" if tolerance is None else
                   f"{'drop' if tolerance.higher_is_better else 'rise'} ≤ {tolerance.tolerance:g}")
        rows.append({"name": name, "anchor_id": anchor_id(name), "value": _number(value), "unit": unit,
                     "anchor": anchor.replace("|", "\\|"), "tolerance": allowed})
    return rows


def front_matter(inputs: CardInputs, title: str) -> str:
    """The Hugging Face model-card metadata as YAML: library, tags, dataset, and ``model-index`` results."""
    dataset = inputs.params.data.dataset
    results = [{"type": name, "name": f"{name} ({UNITS_AND_ANCHORS.get(name, ('', ''))[0] or 'value'})",
                "value": float(value)} for name, value in inputs.metrics.items() if math.isfinite(value)]
    metadata = {
        "library_name": "keras",
        "tags": ["variational-autoencoder", "vae" if inputs.kind == "vae" else "conditional-vae", dataset,
                 "dvc", "mlflow"],
        "datasets": [dataset],
        "metrics": sorted({name for name in inputs.metrics}),
        "model-index": [{"name": title, "results": [{
            "task": {"type": "image-generation", "name": f"Density estimation of {dataset} test images"},
            "dataset": {"type": dataset, "name": dataset, "split": "test"},
            "metrics": results,
        }]}],
    }
    return yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)


def render_model_card(inputs: CardInputs) -> str:
    """The card as Markdown with YAML front matter."""
    dataset, kind = inputs.params.data.dataset, inputs.kind
    title = f"{NAMES[kind][0].upper()}{NAMES[kind][1:]} on {dataset}, run {str(inputs.run.get('run_id', ''))[:8]}"
    uri = str(inputs.run.get("tracking_uri", ""))
    experiment, run_id = inputs.run.get("experiment_id", ""), inputs.run.get("run_id", "")
    models = dict(inputs.run.get("models", {}))
    stats = inputs.data_stats or {}
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                                     keep_trailing_newline=True)
    return environment.get_template("model_card.md.j2").render(
        front_matter=front_matter(inputs, title), title=title, conditional=kind == "cvae",
        dataset_name=dataset, latent_dim=inputs.latent_dim, likelihood=f"−log {LIKELIHOOD[kind]}",
        data_stats=", ".join(f"{split} {stats[split]['count']} images" for split in ("train", "val", "test")
                             if isinstance(stats.get(split), dict) and "count" in stats[split])
        or "see reports/data_stats.json",
        data_digests=inputs.lineage.data(), code_digests=inputs.lineage.code(),
        training_params=[(key, value) for key, value in inputs.params.flat().items()
                         if key.startswith(("model.", "train."))],
        test_count=inputs.test_count, metrics=metric_rows(inputs.metrics, inputs.params),
        classifier_accuracy=None if inputs.classifier_accuracy is None else f"{100 * inputs.classifier_accuracy:.2f} %",
        logged_models=sorted(models.items()), decoder_uri=models.get("decoder", "<decoder model id>"),
        run_id=run_id, experiment_id=experiment, tracking_uri=uri,
        run_url=f"{uri.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}" if uri.startswith("http") else "",
        registry=list(inputs.registry),
        registry_note=", ".join(inputs.params.check.registered_models.model_dump().values()),
    )
