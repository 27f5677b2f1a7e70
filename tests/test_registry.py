"""Promotion to the MLflow Model Registry: versions, the ``champion`` alias and the tags that say why."""

from pathlib import Path

import pytest

from pipeline.tracking import registry
from pipeline.tracking.store import TrackingError

NAMES = {"encoder": "vae-test-encoder", "decoder": "vae-test-decoder"}


@pytest.fixture
def client(store_copy: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    """A client of a fresh SQLite store, which the registry module uses too."""
    import mlflow
    from mlflow.tracking import MlflowClient

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{store_copy}")
    yield MlflowClient()
    mlflow.set_tracking_uri(previous)


def _training_run(client: object, artifacts: Path) -> tuple[str, dict[str, str]]:
    """A run with a logged model per part, as the train stage leaves it (without the Keras files)."""
    experiment = client.get_experiment_by_name("registry") or client.get_experiment(
        client.create_experiment("registry", artifact_location=artifacts.as_uri()))
    run = client.create_run(experiment.experiment_id)
    models = {part: client.create_logged_model(experiment.experiment_id, name=part, source_run_id=run.info.run_id)
              for part in ("encoder", "decoder", "vae")}
    return run.info.run_id, {part: model.model_id for part, model in models.items()}


def test_promotion_registers_each_part_moves_champion_and_tags_the_reason(client: object, tmp_path: Path) -> None:
    run_id, model_ids = _training_run(client, tmp_path / "artifacts")
    tags = registry.promotion_tags("HEAD:reports/metrics.json", {"test_neg_elbo": -0.25, "active_units": None}, run_id)
    promotions = registry.promote(model_ids, NAMES, run_id, tags, "| table |")
    assert [(p.name, p.version, p.reused) for p in promotions] == [("vae-test-encoder", "1", False),
                                                                 ("vae-test-decoder", "1", False)]
    for part, name in NAMES.items():
        version = client.get_model_version_by_alias(name, registry.CHAMPION)
        assert (str(version.version), version.source, version.run_id) == ("1", f"models:/{model_ids[part]}", run_id)
        assert version.tags == {"gate.baseline": "HEAD:reports/metrics.json", "gate.run_id": run_id,
                                "gate.delta.test_neg_elbo": "-0.25", "gate.delta.active_units": "n/a"}
        assert version.description == "| table |"
    assert promotions[1].uri == "models:/vae-test-decoder@champion"


def test_a_later_run_takes_the_alias_and_promoting_it_again_adds_no_version(client: object, tmp_path: Path) -> None:
    first_run, first_models = _training_run(client, tmp_path / "artifacts")
    registry.promote(first_models, NAMES, first_run, {}, "first")
    second_run, second_models = _training_run(client, tmp_path / "artifacts")
    registry.promote(second_models, NAMES, second_run, {}, "second")
    again = registry.promote(second_models, NAMES, second_run, {"gate.baseline": "v2"}, "again")
    assert [(p.version, p.reused) for p in again] == [("2", True), ("2", True)]
    for part, name in NAMES.items():
        assert len(client.search_model_versions(f"name = '{name}'")) == 2
        champion = client.get_model_version_by_alias(name, registry.CHAMPION)
        assert (champion.source, champion.description, champion.tags) == (f"models:/{second_models[part]}", "again",
                                                                          {"gate.baseline": "v2"})


def test_a_run_without_a_logged_part_registers_nothing(client: object, tmp_path: Path) -> None:
    run_id, model_ids = _training_run(client, tmp_path / "artifacts")
    del model_ids["decoder"]
    with pytest.raises(TrackingError, match="no logged decoder model"):
        registry.promote(model_ids, NAMES, run_id, {}, "")
    assert client.search_registered_models() == []


def test_a_store_failure_part_way_leaves_every_alias_where_it_was(client: object, tmp_path: Path) -> None:
    first_run, first_models = _training_run(client, tmp_path / "artifacts")
    registry.promote(first_models, NAMES, first_run, {}, "")
    second_run, second_models = _training_run(client, tmp_path / "artifacts")
    second_models["decoder"] = "m-0123456789abcdef0123456789abcdef"  # no such logged model
    with pytest.raises(TrackingError):
        registry.promote(second_models, NAMES, second_run, {}, "")
    for part, name in NAMES.items():
        assert client.get_model_version_by_alias(name, registry.CHAMPION).source == f"models:/{first_models[part]}"
