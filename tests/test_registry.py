"""Promotion to the MLflow Model Registry: versions, the ``champion`` alias and the tags that say why."""

import json
from pathlib import Path

import pytest
from helpers import git, markdown_tables

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


def _training_run(client: object, artifacts: Path, kind: str | None = None) -> tuple[str, dict[str, str]]:
    """A run with a logged model per part, as the train stage leaves it (without the Keras files), tagged
    ``model.kind`` when ``kind`` is given (runs from before that tag have none)."""
    experiment = client.get_experiment_by_name("registry") or client.get_experiment(
        client.create_experiment("registry", artifact_location=artifacts.as_uri()))
    run = client.create_run(experiment.experiment_id, tags={"model.kind": kind} if kind else None)
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
                                "gate.delta.test_neg_elbo": "-0.25", "gate.delta.active_units": "n/a",
                                "model.kind": "vae"}
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
                                                                          {"gate.baseline": "v2", "model.kind": "vae"})


def test_a_run_without_a_logged_part_registers_nothing(client: object, tmp_path: Path) -> None:
    run_id, model_ids = _training_run(client, tmp_path / "artifacts")
    del model_ids["decoder"]
    with pytest.raises(TrackingError, match="no logged decoder model"):
        registry.promote(model_ids, NAMES, run_id, {}, "")
    assert client.search_registered_models() == []


@pytest.mark.parametrize(("champion_kind", "new_kind"), [("vae", "cvae"), (None, "cvae"), ("cvae", "vae"),
                                                         ("cvae", None)])
def test_a_run_of_another_model_kind_never_takes_the_champion_alias(
        client: object, tmp_path: Path, champion_kind: str | None, new_kind: str | None) -> None:
    """A conditional decoder needs a label its champion's users do not send, and the reverse; an untagged
    version or run is the unconditional VAE."""
    first_run, first_models = _training_run(client, tmp_path / "artifacts", champion_kind)
    registry.promote(first_models, NAMES, first_run, {}, "")
    if champion_kind is None:  # a version registered before versions were tagged with their kind
        for name in NAMES.values():
            client.delete_model_version_tag(name, "1", registry.MODEL_KIND_TAG)
    second_run, second_models = _training_run(client, tmp_path / "artifacts", new_kind)
    with pytest.raises(TrackingError) as refused:
        registry.promote(second_models, NAMES, second_run, {}, "")
    names = {"vae": "unconditional VAE", "cvae": "conditional VAE"}
    assert str(refused.value).count("\n") == 0
    assert (f"{names[champion_kind or 'vae']}" in str(refused.value)
            and f"{names[new_kind or 'vae']}" in str(refused.value))
    for part, name in NAMES.items():
        assert len(client.search_model_versions(f"name = '{name}'")) == 1
        assert client.get_model_version_by_alias(name, registry.CHAMPION).source == f"models:/{first_models[part]}"


def test_each_version_is_tagged_with_its_runs_model_kind_and_the_same_kind_takes_over(
        client: object, tmp_path: Path) -> None:
    first_run, first_models = _training_run(client, tmp_path / "artifacts", "cvae")
    registry.promote(first_models, {"decoder": "cvae-test-decoder"}, first_run, {}, "")
    second_run, second_models = _training_run(client, tmp_path / "artifacts", "cvae")
    registry.promote(second_models, {"decoder": "cvae-test-decoder"}, second_run, {}, "")
    champion = client.get_model_version_by_alias("cvae-test-decoder", registry.CHAMPION)
    assert (str(champion.version), champion.tags["model.kind"]) == ("2", "cvae")


def test_a_store_failure_part_way_leaves_every_alias_where_it_was(client: object, tmp_path: Path) -> None:
    first_run, first_models = _training_run(client, tmp_path / "artifacts")
    registry.promote(first_models, NAMES, first_run, {}, "")
    second_run, second_models = _training_run(client, tmp_path / "artifacts")
    second_models["decoder"] = "m-0123456789abcdef0123456789abcdef"  # no such logged model
    with pytest.raises(TrackingError):
        registry.promote(second_models, NAMES, second_run, {}, "")
    for part, name in NAMES.items():
        assert client.get_model_version_by_alias(name, registry.CHAMPION).source == f"models:/{first_models[part]}"


# --- python -m pipeline check --promote ---------------------------------------------------------------

PARAMS_YAML = """\
check:
  tolerances:
    test_neg_elbo: {higher_is_better: false, tolerance: 1.0}
  registered_models: {encoder: vae-test-encoder, decoder: vae-test-decoder}
"""


@pytest.fixture
def project(client: object, tmp_path: Path, store_copy: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """params.yaml, a baseline metrics file and ``models/run.json`` naming a run with logged models."""
    from pipeline.tracking.run_file import RunRef, write_run_ref

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store_copy}")
    (tmp_path / "params.yaml").write_text(PARAMS_YAML)
    (tmp_path / "baseline").mkdir()
    (tmp_path / "baseline" / "metrics.json").write_text(json.dumps({"test_neg_elbo": 100.0}))
    run_id, model_ids = _training_run(client, tmp_path / "artifacts")
    write_run_ref(tmp_path / "models" / "run.json", RunRef(run_id, "1", f"sqlite:///{store_copy}", model_ids))
    return tmp_path


def _check(project: Path, new_neg_elbo: float, *extra: str) -> int:
    from pipeline.check import main

    (project / "metrics.json").write_text(json.dumps({"test_neg_elbo": new_neg_elbo}))
    return main(["--params", str(project / "params.yaml"), "--metrics", str(project / "metrics.json"),
                 "--baseline", str(project / "baseline" / "metrics.json"),
                 "--run", str(project / "models" / "run.json"), *extra])


def test_check_promote_with_a_passing_gate_moves_champion_to_the_run(client: object, project: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    assert _check(project, 100.5, "--promote") == 0
    out = capsys.readouterr().out
    assert "promoted: models:/vae-test-decoder@champion -> version 1\n" in out
    model_ids = json.loads((project / "models" / "run.json").read_text())["models"]
    for part, name in NAMES.items():
        champion = client.get_model_version_by_alias(name, registry.CHAMPION)
        assert champion.source == f"models:/{model_ids[part]}"
        assert champion.tags["gate.baseline"] == str(project / "baseline" / "metrics.json")
        assert champion.tags["gate.delta.test_neg_elbo"] == "+0.5"
        assert "**Gate passed:**" in champion.description


def test_the_promoted_versions_description_shows_every_param_value_as_written(
        client: object, project: Path) -> None:
    """The reported case: a ``|`` in ``train.experiment`` split the description's params table."""
    (project / "params.yaml").write_text(PARAMS_YAML + 'train:\n  experiment: "vae|mnist <b>`x`</b>\\nnext"\n')
    (project / "old-params.yaml").write_text(PARAMS_YAML + 'train:\n  experiment: "*old* [v](1) a\\\\|b"\n')
    assert _check(project, 100.5, "--promote", "--baseline-params", str(project / "old-params.yaml")) == 0
    for name in NAMES.values():
        description = client.get_model_version_by_alias(name, registry.CHAMPION).description
        metrics_table, params_table = markdown_tables(description)
        assert params_table == [["param", "baseline", "new"],
                                ["train.experiment", "*old* [v](1) a\\|b", "vae|mnist <b>`x`</b>\\nnext"]]
        assert metrics_table[1] == ["test_neg_elbo", "100", "100.5", "+0.5", "rise <= 1", "ok"]


def test_check_promote_with_a_failing_gate_registers_and_moves_nothing(client: object, project: Path) -> None:
    assert _check(project, 100.5, "--promote") == 0
    first = client.get_model_version_by_alias("vae-test-decoder", registry.CHAMPION)
    run_id, model_ids = _training_run(client, project / "artifacts")
    (project / "models" / "run.json").write_text(json.dumps(
        {"run_id": run_id, "experiment_id": "1", "tracking_uri": "", "models": model_ids}))
    assert _check(project, 101.5, "--promote") == 1
    assert client.get_model_version_by_alias("vae-test-decoder", registry.CHAMPION).version == first.version
    assert len(client.search_model_versions("name = 'vae-test-decoder'")) == 1


def test_check_without_promote_registers_nothing(client: object, project: Path) -> None:
    assert _check(project, 99.0) == 0
    assert client.search_registered_models() == []


@pytest.mark.parametrize("run_json", ['{"run_id": "%s", "experiment_id": "1", "tracking_uri": ""}', None])
def test_check_promote_without_logged_models_or_run_file_fails_in_one_line_before_the_gate(
    client: object, project: Path, capsys: pytest.CaptureFixture, run_json: str | None
) -> None:
    run_file = project / "models" / "run.json"
    run_id = json.loads(run_file.read_text())["run_id"]
    if run_json is None:
        run_file.unlink()
    else:
        run_file.write_text(run_json % run_id)
    assert _check(project, 99.0, "--promote") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("check: error: ")
    assert ("no logged decoder or encoder model" if run_json else "cannot read the training run") in captured.err
    assert client.search_registered_models() == []


def test_check_promote_against_a_git_revision_tags_the_commit_it_names(client: object, project: Path) -> None:
    git(project, "init", "-q")
    (project / "reports").mkdir()
    (project / "reports" / "metrics.json").write_text(json.dumps({"test_neg_elbo": 100.0}))
    git(project, "add", "reports/metrics.json")
    git(project, "commit", "-q", "-m", "baseline")
    from pipeline.check import main

    (project / "reports" / "metrics.json").write_text(json.dumps({"test_neg_elbo": 99.75}))
    assert main(["--params", str(project / "params.yaml"), "--metrics", str(project / "reports" / "metrics.json"),
                 "--run", str(project / "models" / "run.json"), "--promote"]) == 0
    tags = client.get_model_version_by_alias("vae-test-encoder", registry.CHAMPION).tags
    assert tags["gate.baseline"] == "HEAD:reports/metrics.json"
    assert tags["gate.baseline_commit"] == git(project, "rev-parse", "HEAD").strip()
    assert tags["gate.delta.test_neg_elbo"] == "-0.25"


def test_check_promote_across_model_kinds_compares_when_allowed_but_registers_nothing(
        client: object, project: Path, capsys: pytest.CaptureFixture) -> None:
    """A conditional decoder takes a label input the champion's users do not send: never promoted over a VAE."""
    (project / "model.json").write_text(json.dumps({"kind": "cvae", "likelihood": "p(x|y)", "num_classes": 10}))
    assert _check(project, 90.0, "--promote") == 1
    assert "cannot compare: the baseline is from the unconditional VAE" in capsys.readouterr().err
    assert _check(project, 90.0, "--promote", "--allow-model-change") == 1
    captured = capsys.readouterr()
    assert "**Models differ:**" in captured.out and "**Gate passed:**" in captured.out
    assert captured.err.startswith("check: error: not promoting: the baseline is from the unconditional VAE")
    assert client.search_registered_models() == []


def test_check_promote_refuses_a_conditional_run_over_the_unconditional_champion_in_one_line(
        client: object, project: Path, capsys: pytest.CaptureFixture) -> None:
    """The commit that turns on model.conditional: baseline and new are both cvae, so the gate compares them,
    but the champion is the VAE's decoder, whose users send no label."""
    assert _check(project, 100.5, "--promote") == 0
    first = client.get_model_version_by_alias("vae-test-decoder", registry.CHAMPION)
    run_id, model_ids = _training_run(client, project / "artifacts", "cvae")
    (project / "models" / "run.json").write_text(json.dumps(
        {"run_id": run_id, "experiment_id": "1", "tracking_uri": "", "models": model_ids}))
    for model_json in (project / "model.json", project / "baseline" / "model.json"):
        model_json.write_text(json.dumps({"kind": "cvae", "likelihood": "p(x|y)", "num_classes": 10}))
    capsys.readouterr()
    assert _check(project, 90.0, "--promote") == 1
    err = capsys.readouterr().err
    assert err.startswith("check: error: ") and err.count("\n") == 1
    assert "conditional VAE" in err and "unconditional VAE" in err
    assert client.get_model_version_by_alias("vae-test-decoder", registry.CHAMPION).version == first.version
    assert len(client.search_model_versions("name = 'vae-test-decoder'")) == 1
