"""The search space in tune.yaml: refused before any trial, with the dotted key, whenever a trial could not run it
or would score on the test set; the committed file is valid."""

from pathlib import Path

import pytest
import yaml
from helpers import REPO_ROOT

from pipeline.core.params import load_params, parse_params
from pipeline.core.strict_yaml import load_yaml
from pipeline.tuning.space import (
    TuneSettingsError,
    cli_value,
    load_settings,
    parse_overrides,
    trial_params,
)

BASE = {"objective": "val_neg_elbo", "trials": 4, "fixed": {"data.val_fraction": 0.1},
        "space": {"train.learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
                  "train.optimizer": {"choices": ["adam", "sgd"]}}}


def write(tmp_path: Path, settings: dict) -> Path:
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def refusal(tmp_path: Path, change: dict, overrides: dict | None = None) -> str:
    settings = {**BASE, **change}
    with pytest.raises(TuneSettingsError) as raised:
        load_settings(write(tmp_path, settings), parse_params({}), overrides)
    return str(raised.value)


def test_the_committed_search_space_fits_the_committed_params() -> None:
    settings = load_settings(REPO_ROOT / "tune.yaml", load_params(REPO_ROOT / "params.yaml"))
    assert settings.objective == "val_neg_elbo" and settings.trials >= 30
    assert settings.fixed["data.val_fraction"] > 0
    assert {"train.optimizer", "train.learning_rate", "train.batch_size", "train.beta"} <= set(settings.space)


@pytest.mark.parametrize(("space", "expected"), [
    ({"train.optimiser": {"choices": ["adam"]}}, "space.train.optimiser: value 'adam': train.optimiser: unknown key"),
    ({"trian.beta": {"low": 0.1, "high": 1.0}}, "space.trian.beta: value 0.1: trian: unknown key"),
    ({"beta": {"low": 0.1, "high": 1.0}}, "space.beta: 'beta' is not a param"),
    ({"train.learning_rate": {"low": 0.1, "high": 0.01}}, "space.train.learning_rate: empty range"),
    ({"train.beta": {"low": 0.5, "high": 0.5}}, "space.train.beta: empty range"),
    ({"train.learning_rate": {"low": 0.0, "high": 0.1, "log": True}}, "space.train.learning_rate: a log scale"),
    ({"train.batch_size": {"low": 0, "high": 100}}, "space.train.batch_size: value 0: train.batch_size: Input "
                                                    "should be greater than or equal to 1"),
    ({"train.batch_size": {"low": 8, "high": 100_000}}, "space.train.batch_size: value 100000"),
    ({"train.batch_size": {"low": 1.5, "high": 64.0}}, "space.train.batch_size: value 1.5: train.batch_size: "
                                                       "Input should be a valid integer"),
    ({"train.optimizer": {"choices": ["adam", "nadam"]}}, "space.train.optimizer: value 'nadam'"),
    ({"train.epochs": {"choices": []}}, "space.train.epochs.choices: Tuple should have at least 1 item"),
    ({"train.beta": {"low": 0.1}}, "space.train.beta"),
    ({}, "space: Dictionary should have at least 1 item"),
])
def test_a_bad_space_is_refused_naming_the_dotted_key(tmp_path: Path, space: dict, expected: str) -> None:
    assert expected in refusal(tmp_path, {"space": space})


@pytest.mark.parametrize(("change", "overrides", "expected"), [
    ({"fixed": {"data.val_fraction": 0.0}}, None, "fixed.data.val_fraction: 0.0 would score trials on the test set"),
    ({"fixed": {}}, None, "fixed.data.val_fraction: 0.0 would score trials on the test set"),  # params.yaml's 0
    ({}, {"data.val_fraction": 0}, "fixed.data.val_fraction: 0 would score trials on the test set"),
    ({"fixed": {}, "space": {"data.val_fraction": {"choices": [0.0, 0.1]}}}, None,
     "space.data.val_fraction: 0.0 would score trials on the test set"),
    ({"objective": "test_neg_elbo"}, None, "objective: Input should be 'val_neg_elbo'"),
])
def test_a_study_that_would_score_trials_on_the_test_set_is_refused(tmp_path: Path, change: dict,
                                                                    overrides: dict | None, expected: str) -> None:
    assert expected in refusal(tmp_path, change, overrides)


@pytest.mark.parametrize(("change", "expected"), [
    ({"fixed": {"data.val_fraction": 0.1, "train.learning_rate": 0.1}}, "space.train.learning_rate: also fixed"),
    ({"fixed": {"data.val_fraction": 0.1, "train.epochs": 0}}, "fixed: train.epochs: Input should be greater"),
    ({"fixed": {"data.val_fraction": 1.5}}, "fixed: data.val_fraction: Input should be less than 1"),
    ({"trials": 0}, "trials: Input should be greater than or equal to 1"),
    ({"pruner": {"kind": "hyperband"}}, "pruner.kind: Input should be 'median' or 'none'"),
    ({"sampler": "tpe"}, "sampler: unknown key"),
])
def test_bad_fixed_params_and_study_settings_are_refused(tmp_path: Path, change: dict, expected: str) -> None:
    assert expected in refusal(tmp_path, change)


def test_a_bad_file_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "tune.yaml"
    path.write_text("space: [unclosed", encoding="utf-8")
    with pytest.raises(TuneSettingsError, match="tune.yaml: not valid YAML"):
        load_settings(path, parse_params({}))
    with pytest.raises(TuneSettingsError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml", parse_params({}))


def test_set_reads_values_as_dvc_exp_run_s_does_and_rejects_a_missing_equals_sign() -> None:
    assert parse_overrides(["train.epochs=1", "train.learning_rate=1e-3", "model.conditional=true",
                            "train.optimizer=adam"]) == {
        "train.epochs": 1, "train.learning_rate": 1e-3, "model.conditional": True, "train.optimizer": "adam"}
    with pytest.raises(TuneSettingsError, match="expected key=value"):
        parse_overrides(["train.epochs"])


@pytest.mark.parametrize("value", [1e-05, 0.00123456789, 3, True, False, "adam", 0.1 + 0.2])
def test_a_sampled_value_reaches_dvc_and_comes_back_unchanged(value: object) -> None:
    assert load_yaml(cli_value(value)) == value


def test_a_trial_combination_that_does_not_fit_together_is_caught_before_it_runs(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, {**BASE, "space": {
        "train.batch_size": {"choices": [100, 60_000]}, "model.intermediate_dim": {"low": 16, "high": 4096}}}),
        parse_params({}))
    assert trial_params(parse_params({}), settings, {"train.batch_size": 100, "model.intermediate_dim": 4096})
    with pytest.raises(TuneSettingsError, match="train.batch_size: .* hidden activations per step"):
        trial_params(parse_params({}), settings, {"train.batch_size": 60_000, "model.intermediate_dim": 4096})
