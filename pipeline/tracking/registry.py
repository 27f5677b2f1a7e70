"""The MLflow Model Registry: promote a training run's encoder and decoder when the regression gate passes.

Each promoted logged model becomes a version of its registered model (created on first use), tagged
with the baseline it was compared to and the metric deltas, described by the gate's table, and the
alias ``champion`` moves to it, so ``models:/vae-mnist-decoder@champion`` always names the model that
last passed the gate. Promoting the same run again reuses its versions instead of adding copies.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipeline.tracking.store import TrackingError, store_errors

CHAMPION = "champion"
BASELINE_TAG = "gate.baseline"
BASELINE_COMMIT_TAG = "gate.baseline_commit"
DELTA_TAG = "gate.delta.{metric}"
RUN_TAG = "gate.run_id"
DESCRIPTION = ("A part of the VAE, registered by `python -m pipeline check --promote`; "
               f"the alias {CHAMPION} names the last version that passed the regression gate.")


@dataclass(frozen=True)
class Promotion:
    """One registered model version that the alias now points at."""

    name: str
    version: str
    model_id: str
    reused: bool

    @property
    def uri(self) -> str:
        """The alias URI that serves this version: ``models:/<name>@champion``."""
        return f"models:/{self.name}@{CHAMPION}"


def promotion_tags(baseline: str, deltas: Mapping[str, float | None], run_id: str,
                   baseline_commit: str | None = None) -> dict[str, str]:
    """Version tags saying why it was promoted: the baseline (label, and commit when it came from git)
    and each gated metric's ``new - baseline``, with its sign (``+0.0312``) or ``n/a`` where either side lacked it.
    """
    tags = {BASELINE_TAG: baseline, RUN_TAG: run_id}
    if baseline_commit:
        tags[BASELINE_COMMIT_TAG] = baseline_commit
    for metric, delta in deltas.items():
        text = "n/a" if delta is None or not math.isfinite(delta) else f"{delta:+.6g}"
        tags[DELTA_TAG.format(metric=metric)] = text
    return tags


def require_parts(model_ids: Mapping[str, str], names: Mapping[str, str], run_id: str) -> None:
    """Raise ``TrackingError`` unless the run logged a model for every part to promote."""
    missing = sorted(part for part in names if part not in model_ids)
    if missing:
        raise TrackingError(f"the training run {run_id} has no logged {' or '.join(missing)} model; "
                            "rerun training (dvc repro --force train) to log them")


@store_errors
def promote(model_ids: Mapping[str, str], names: Mapping[str, str], run_id: str, tags: Mapping[str, str],
            description: str) -> list[Promotion]:
    """Register ``model_ids[part]`` as a version of ``names[part]`` for each part, then move ``champion``.

    ``model_ids``: the run's logged models by part (``encoder``, ``decoder``, ...); ``names``: the
    registered model name of each part to promote. Every version is created before any alias moves,
    so a failure part-way leaves each alias where it was. Raises ``TrackingError`` when a part has no
    logged model or the store fails.
    """
    require_parts(model_ids, names, run_id)
    client = MlflowClient()
    promotions = [_version(client, name, model_ids[part], run_id, tags, description) for part, name in names.items()]
    for promotion in promotions:
        client.set_registered_model_alias(promotion.name, CHAMPION, promotion.version)
    return promotions


def _version(client: MlflowClient, name: str, model_id: str, run_id: str, tags: Mapping[str, str],
             description: str) -> Promotion:
    """The version of ``name`` holding ``model_id``: the existing one (tags refreshed), else a new one."""
    _ensure_registered_model(client, name)
    for existing in client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'"):
        if existing.source == _source(model_id):
            for key, value in tags.items():
                client.set_model_version_tag(name, existing.version, key, value)
            client.update_model_version(name, existing.version, description=description)
            return Promotion(name, str(existing.version), model_id, reused=True)
    created = client.create_model_version(name, source=_source(model_id), run_id=run_id, tags=dict(tags),
                                          description=description, model_id=model_id)
    return Promotion(name, str(created.version), model_id, reused=False)


def _source(model_id: str) -> str:
    """The version's source: the SQL registry keeps this URI, not the ``model_id`` field."""
    return f"models:/{model_id}"


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.create_registered_model(name, description=DESCRIPTION)
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
