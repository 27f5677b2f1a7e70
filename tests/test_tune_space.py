"""The search space in tune.yaml: refused before any trial, with the dotted key, whenever a trial could not run it
or would score on the test set; the committed file is valid."""

from pathlib import Path

import optuna
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
    settings_from,
    trial_params,
)
from pipeline.tuning.study import make_sampler, suggest

BASE = {"objective": "val_neg_elbo", "trials": 4, "fixed": {"data.val_fraction": 0.1},
        "space": {"train.learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
                  "train.optimizer": {"choices": ["adam", "sgd"]}}}


def write(tmp_path: Path, settings: dict) -> Path:
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")  # the space is drawn in order
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
    assert settings.fixed["train.beta"] == 1.0  # trials train on the bound they are judged by
    knobs = {"train.optimizer", "train.learning_rate", "train.batch_size", "train.adam_beta_1", "train.adam_beta_2",
             "train.rmsprop_rho", "train.rmsprop_epsilon", "train.lr_schedule", "train.lr_final_fraction",
             "train.lr_warmup_epochs", "train.beta_warmup_epochs", "train.z_samples"}
    assert knobs <= set(settings.space)


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


OPTIMIZERS = {"train.optimizer": {"choices": ["adam", "rmsprop"]},
              "train.adam_beta_2": {"low": 0.99, "high": 0.9999, "when": {"train.optimizer": "adam"}}}
SCHEDULES = {"train.lr_schedule": {"choices": ["constant", "cosine", "exponential"]},
             "train.lr_final_fraction": {"low": 0.01, "high": 0.3, "log": True,
                                         "when": {"train.lr_schedule": ["cosine", "exponential"]}}}


@pytest.mark.parametrize(("space", "fixed", "expected"), [
    ({"train.optimizer": {"choices": ["adam", "rmsprop"]}, "train.adam_beta_2": {"low": 0.99, "high": 0.9999}}, {},
     "space.train.adam_beta_2: value 0.99: train.adam_beta_2: 0.99 has no effect with train.optimizer rmsprop"),
    ({**OPTIMIZERS, "train.rmsprop_rho": {"low": 0.9, "high": 0.99, "when": {"train.optimiser": "rmsprop"}}}, {},
     "space.train.rmsprop_rho.when.train.optimiser: value 'rmsprop': train.optimiser: unknown key"),
    ({**OPTIMIZERS, "train.rmsprop_rho": {"low": 0.9, "high": 0.99, "when": {"trian.optimizer": "rmsprop"}}}, {},
     "space.train.rmsprop_rho.when.trian.optimizer: value 'rmsprop': trian: unknown key"),
    ({**OPTIMIZERS, "train.adam_beta_1": {"low": 0.8, "high": 0.95, "when": {"train.optimizer": "nadam"}}}, {},
     "space.train.adam_beta_1.when.train.optimizer: 'nadam' is not one of its choices ['adam', 'rmsprop']"),
    ({**OPTIMIZERS, "train.adam_beta_1": {"low": 0.8, "high": 0.95, "when": {"train.optimizer": ["adam", "sgd"]}}},
     {}, "space.train.adam_beta_1.when.train.optimizer: 'sgd' is not one of its choices"),
    ({"train.adam_beta_1": {"low": 0.8, "high": 0.95, "when": {"train.optimizer": "nadam"}}},
     {"train.optimizer": "adam"}, "space.train.adam_beta_1.when.train.optimizer: value 'nadam': train.optimizer: "
                                  "Input should be 'rmsprop', 'adam' or 'sgd'"),
    ({"train.adam_beta_1": {"low": 0.8, "high": 0.95, "when": {"train.optimizer": "adam"}}},
     {"train.optimizer": "rmsprop"}, "space.train.adam_beta_1.when.train.optimizer: never met: train.optimizer is "
                                     "fixed at 'rmsprop'"),
    ({"train.adam_beta_1": {"low": 0.8, "high": 0.95, "when": {"train.optimizer": "adam"}}}, {},
     "space.train.adam_beta_1.when.train.optimizer: train.optimizer is neither searched with choices nor fixed"),
    ({"train.adam_beta_1": {"low": 0.8, "high": 0.95, "when": {"train.optimizer": "adam"}},
      "train.optimizer": {"choices": ["adam", "rmsprop"]}}, {},
     "space.train.adam_beta_1.when.train.optimizer: train.optimizer is listed after train.adam_beta_1"),
    ({"train.learning_rate": {"low": 1e-3, "high": 1e-2},
      "train.lr_warmup_epochs": {"low": 0.0, "high": 1.0, "when": {"train.learning_rate": 1e-3}}}, {},
     "space.train.lr_warmup_epochs.when.train.learning_rate: train.learning_rate is searched over a range"),
    ({"train.lr_warmup_epochs": {"low": 0.0, "high": 1.0, "when": {"train.lr_warmup_epochs": 0.5}}}, {},
     "space.train.lr_warmup_epochs.when.train.lr_warmup_epochs: a dimension cannot depend on itself"),
    ({**OPTIMIZERS, **SCHEDULES, "train.lr_warmup_epochs": {
        "low": 0.0, "high": 1.0, "when": {"train.lr_schedule": "cosine", "train.adam_beta_2": 0.99}}}, {},
     "space.train.lr_warmup_epochs.when.train.adam_beta_2: train.adam_beta_2 is searched over a range"),
    ({**OPTIMIZERS, "train.lr_schedule": {"choices": ["constant", "cosine"], "when": {"train.optimizer": "adam"}},
      "train.lr_final_fraction": {"low": 0.01, "high": 0.3,
                                  "when": {"train.lr_schedule": "cosine", "train.optimizer": "rmsprop"}}}, {},
     "space.train.lr_final_fraction.when.train.optimizer: never met: it needs train.optimizer in ['adam'] and "
     "in ['rmsprop']"),
    ({**OPTIMIZERS, "train.adam_beta_1": {"low": 0.8, "high": 0.95, "when": {"train.optimizer": []}}}, {},
     "space.train.adam_beta_1.when.train.optimizer: Tuple should have at least 1 item"),
    ({**OPTIMIZERS, "train.adam_beta_1": {"low": 0.8, "high": 0.95, "when": "adam"}}, {},
     "space.train.adam_beta_1.when: Input should be a valid dictionary"),
    ({**OPTIMIZERS, "train.adam_beta_1": {"low": 0.8, "high": 0.95, "when": {"train.optimizer": {"is": "adam"}}}},
     {}, "space.train.adam_beta_1.when: Value error, train.optimizer: expected a value or a list of values"),
    ({"train.lr_schedule": {"choices": ["cosine", "exponential"]},
      "train.lr_final_fraction": {"low": 0.0, "high": 0.3, "when": {"train.lr_schedule": ["cosine", "exponential"]}}},
     {}, "space.train.lr_final_fraction: value 0.0: train.lr_final_fraction: 0 is never reached by an exponential"),
])
def test_a_bad_condition_is_refused_naming_the_dotted_key(tmp_path: Path, space: dict, fixed: dict,
                                                          expected: str) -> None:
    change = {"space": space, "fixed": {"data.val_fraction": 0.1, "train.beta": 1.0, **fixed}}
    assert expected in refusal(tmp_path, change)


CONDITIONAL = {**OPTIMIZERS, **SCHEDULES,
               "train.rmsprop_rho": {"choices": [0.9, 0.99], "when": {"train.optimizer": "rmsprop"}},
               "train.objective": {"choices": ["elbo", "iwae"]},
               "train.beta_warmup_epochs": {"low": 0.0, "high": 1.0, "when": {"train.objective": "elbo"}}}


def test_a_conditional_space_loads_and_survives_the_study_s_stored_copy(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, {**BASE, "fixed": {"data.val_fraction": 0.1, "train.beta": 1.0},
                                              "space": CONDITIONAL}), parse_params({}))
    assert settings.space["train.adam_beta_2"].when == {"train.optimizer": ("adam",)}
    assert settings.space["train.lr_final_fraction"].when == {"train.lr_schedule": ("cosine", "exponential")}
    assert settings_from(settings.as_attrs()) == settings  # what a joining worker on another host reads


def test_each_trial_draws_a_conditional_dimension_exactly_when_its_condition_holds(tmp_path: Path) -> None:
    """Past the sampler's random start too (the group-decomposed TPE), and every drawn point trains."""
    settings = load_settings(write(tmp_path, {**BASE, "fixed": {"data.val_fraction": 0.1, "train.beta": 1.0},
                                              "space": CONDITIONAL}), parse_params({}))
    study = optuna.create_study(sampler=make_sampler(0))
    seen = set()
    for _ in range(24):
        trial = study.ask()
        point = suggest(trial, settings)
        assert ("train.adam_beta_2" in point) == (point["train.optimizer"] == "adam")
        assert ("train.rmsprop_rho" in point) == (point["train.optimizer"] == "rmsprop")
        assert ("train.lr_final_fraction" in point) == (point["train.lr_schedule"] != "constant")
        assert ("train.beta_warmup_epochs" in point) == (point["train.objective"] == "elbo")
        trial_params(parse_params({}), settings, point)  # no conflict: a skipped setting keeps its default
        seen.add((point["train.optimizer"], point["train.lr_schedule"], point["train.objective"]))
        study.tell(trial, point.get("train.adam_beta_2", 1.0) + point.get("train.lr_final_fraction", 0.0))
    assert len(seen) >= 6  # the draws went down most branches
