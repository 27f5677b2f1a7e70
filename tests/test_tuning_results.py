"""The best trial of a study: the complete one with the lowest validation -ELBO, whatever else the study holds."""

import math

import optuna
from optuna.trial import TrialState, create_trial

from pipeline.tuning.results import best_trial, objective_value


def study_of(*trials: optuna.trial.FrozenTrial) -> optuna.Study:
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    for trial in trials:
        study.add_trial(trial)
    return study


def test_the_best_trial_is_the_complete_one_with_the_lowest_value() -> None:
    study = study_of(create_trial(value=101.5), create_trial(value=99.25), create_trial(state=TrialState.FAIL),
                     create_trial(state=TrialState.RUNNING), create_trial(value=100.0))
    best = best_trial(study)
    assert best is not None and best.value == 99.25 and objective_value(best) == 99.25


def test_a_study_without_a_complete_trial_has_no_best() -> None:
    assert best_trial(study_of()) is None
    assert best_trial(study_of(create_trial(state=TrialState.FAIL), create_trial(state=TrialState.WAITING))) is None


def test_a_trial_without_a_value_ranks_last() -> None:
    """Optuna types a trial's value optional: a running one has none, and it never beats a scored one."""
    assert objective_value(create_trial(state=TrialState.RUNNING)) == math.inf
    assert objective_value(create_trial(value=-3.0)) == -3.0
