"""The MLflow Model Registry: promote a training run's encoder and decoder when the regression gate passes.

Each promoted logged model becomes a version of its registered model (created on first use), tagged
with the baseline it was compared to and the metric deltas, described by the gate's table, and the
alias ``champion`` moves to it, so ``models:/vae-mnist-decoder@champion`` always names the model that
last passed the gate. Promoting the same run again reuses its versions instead of adding copies.

Each version is tagged ``model.kind`` from its run (``pipeline.core.model_kind``; a run or version
without the tag is the unconditional VAE). The conditional decoder takes a label input the
unconditional one does not, so ``champion`` never moves to a version of another kind than the one it
names: users of ``models:/<name>@champion`` would get a model whose inputs changed under them.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipeline.core.model_kind import NAMES, VAE, ModelKind, is_model_kind
from pipeline.core.model_kind import RUN_TAG as MODEL_KIND_TAG
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
    logged model, when a ``champion`` names a model of another kind than the run's, or when the store fails.
    """
    require_parts(model_ids, names, run_id)
    kind = require_champion_kind(names, run_id)
    tags = {**tags, MODEL_KIND_TAG: kind}
    client = MlflowClient()
    promotions = [_version(client, name, model_ids[part], run_id, tags, description) for part, name in names.items()]
    for promotion in promotions:
        client.set_registered_model_alias(promotion.name, CHAMPION, promotion.version)
    return promotions


@store_errors
def require_champion_kind(names: Mapping[str, str], run_id: str) -> ModelKind:
    """The run's model kind, once no registered model in ``names`` has a ``champion`` of another kind.

    Raises ``TrackingError`` naming the registered model and both kinds, or when the run's tag names no kind.
    """
    client = MlflowClient()
    kind = client.get_run(run_id).data.tags.get(MODEL_KIND_TAG, VAE)
    if not is_model_kind(kind):
        raise TrackingError(f"the training run {run_id} has an unknown {MODEL_KIND_TAG} tag {kind!r}; "
                            f"expected one of {', '.join(NAMES)}")
    for name in names.values():
        champion = _champion_kind(client, name)
        if champion not in (None, kind):
            raise TrackingError(f"not promoting: {name}@{CHAMPION} is the {NAMES[champion]}, the run {run_id} the "
                                f"{NAMES[kind]}, whose inputs differ; register this kind under other names "
                                "(check.registered_models)")
    return kind


def _champion_kind(client: MlflowClient, name: str) -> str | None:
    """The kind of the version ``champion`` names in ``name`` (untagged: ``vae``), ``None`` without one."""
    found = client.search_registered_models(filter_string=f"name = '{name}'")
    version = found[0].aliases.get(CHAMPION) if found else None
    if version is None:
        return None
    return client.get_model_version(name, str(version)).tags.get(MODEL_KIND_TAG, VAE)


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


@dataclass(frozen=True)
class VersionRecord:
    """One registered version, as a model card lists the registry's history."""

    name: str
    version: str
    run_id: str
    created: str
    """Creation time, UTC, ``YYYY-MM-DD HH:MM``."""
    aliases: tuple[str, ...]
    baseline: str
    """The gate's baseline when it was promoted (tag ``gate.baseline``), or ``""``."""


@store_errors
def history(names: Mapping[str, str]) -> list[VersionRecord]:
    """Every version of the registered models ``names`` (part → name), newest first, with the aliases on each.

    MLflow keeps no log of alias moves; the versions' creation times and gate tags are that history, since
    ``promote`` adds a version each time ``champion`` moves to a new run. A name never registered has none.
    """
    import datetime

    client = MlflowClient()
    records = []
    for name in names.values():
        found = client.search_registered_models(filter_string=f"name = '{name}'")
        aliases = found[0].aliases if found else {}
        for version in client.search_model_versions(f"name = '{name}'"):
            created = datetime.datetime.fromtimestamp(version.creation_timestamp / 1000, datetime.UTC)
            records.append(VersionRecord(
                name, str(version.version), version.run_id or "", created.strftime("%Y-%m-%d %H:%M"),
                tuple(sorted(alias for alias, number in aliases.items() if str(number) == str(version.version))),
                (version.tags or {}).get(BASELINE_TAG, "")))
    return sorted(records, key=lambda record: (record.name, -int(record.version)))
