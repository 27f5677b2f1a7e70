"""The optimizer from the train params: Keras' own with the params' settings, and each learning-rate schedule's
value at given steps against its formula."""

import dataclasses
import math

import keras
import pytest
from helpers import REPO_ROOT

from pipeline.core.params import load_params
from pipeline.model.optimizers import LinearWarmup, learning_rate, make_optimizer, steps_in
from pipeline.model.trainer import TrainConfig, make_trainer

LR, EPOCHS, STEPS_PER_EPOCH = 0.01, 4, 10
BASE = TrainConfig(latent_dim=2, intermediate_dim=8, epochs=EPOCHS, batch_size=100, optimizer="rmsprop",
                   learning_rate=LR, beta=1.0, seed=0, train_size=STEPS_PER_EPOCH * 100)


def config(**changes: object) -> TrainConfig:
    return dataclasses.replace(BASE, **changes)


def test_the_shipped_params_give_keras_rmsprop_with_its_own_defaults() -> None:
    """So the notebook's run is unchanged: the same optimizer, down to its config, as ``RMSprop(1e-3)``."""
    shipped = TrainConfig.from_params(load_params(REPO_ROOT / "params.yaml"), train_size=60_000)
    ours = make_optimizer(shipped, shipped.steps_per_epoch).get_config()
    keras_own = keras.optimizers.RMSprop(learning_rate=0.001).get_config()
    assert ours.pop("name").startswith("rm_sprop") and keras_own.pop("name").startswith("rm_sprop")
    assert ours == keras_own


@pytest.mark.parametrize(("changes", "expected"), [
    ({"optimizer": "rmsprop", "rmsprop_rho": 0.99, "rmsprop_momentum": 0.5, "rmsprop_epsilon": 1e-16},
     {"rho": 0.99, "momentum": 0.5, "epsilon": 1e-16}),
    ({"optimizer": "adam", "adam_beta_1": 0.8, "adam_beta_2": 0.99, "adam_epsilon": 1e-8},
     {"beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-8}),
    ({"optimizer": "adam"}, {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}),
], ids=["rmsprop", "adam", "adam-keras-defaults"])
def test_each_optimizer_gets_its_own_settings_under_keras_names(changes: dict, expected: dict) -> None:
    optimizer = make_optimizer(config(**changes))
    assert type(optimizer).__name__.lower() == changes["optimizer"]
    assert {key: optimizer.get_config()[key] for key in expected} == expected


def cosine(step: int, steps: int, fraction: float) -> float:
    """Keras' ``CosineDecay`` with alpha = ``fraction`` (Loshchilov and Hutter 2017, without restarts)."""
    return LR * (fraction + (1 - fraction) * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps)))


TOTAL = EPOCHS * STEPS_PER_EPOCH
# case -> (config changes, [(step, expected rate from the formula)])
SCHEDULES = {
    "constant-warmup-1-epoch": ({"lr_warmup_epochs": 1.0}, [
        (0, LR / 10), (4, LR * 5 / 10), (9, LR), (10, LR), (TOTAL - 1, LR)]),
    "cosine": ({"lr_schedule": "cosine", "lr_final_fraction": 0.1}, [
        (step, cosine(step, TOTAL, 0.1)) for step in (0, 1, 10, 20, 39, 40)]),
    "cosine-to-zero-after-warmup": ({"lr_schedule": "cosine", "lr_warmup_epochs": 1.0}, [
        (0, LR / 10), (9, LR), *((10 + step, cosine(step, TOTAL - 10, 0.0)) for step in (0, 15, 29))]),
    "exponential-half-epoch-warmup": ({"lr_schedule": "exponential", "lr_final_fraction": 0.01,
                                       "lr_warmup_epochs": 0.5}, [
        (0, LR / 5), (4, LR), *((5 + step, LR * 0.01 ** (step / (TOTAL - 5))) for step in (0, 7, 35))]),
    "exponential": ({"lr_schedule": "exponential", "lr_final_fraction": 0.5}, [
        (step, LR * 0.5 ** (step / TOTAL)) for step in (0, 13, 40)]),
}


@pytest.mark.parametrize(("changes", "expected"), SCHEDULES.values(), ids=SCHEDULES.keys())
def test_schedule_value_at_each_step_is_its_formula(changes: dict, expected: list[tuple[int, float]]) -> None:
    schedule = learning_rate(config(**changes), STEPS_PER_EPOCH)
    for step, rate in expected:
        assert float(schedule(step)) == pytest.approx(rate, rel=1e-5, abs=LR * 1e-6), step


def test_the_optimizer_reads_its_schedule_at_its_own_iteration_count() -> None:
    """What the compiled loop and a resumed checkpoint rely on: the rate follows ``iterations``, not a Python count."""
    optimizer = make_optimizer(config(lr_schedule="cosine"), STEPS_PER_EPOCH)
    optimizer.build([keras.Variable([1.0])])
    for step in (0, 17, 39):
        optimizer.iterations.assign(step)
        assert float(optimizer.learning_rate) == pytest.approx(cosine(step, TOTAL, 0.0), rel=1e-5, abs=LR * 1e-6)


def test_a_constant_rate_stays_a_float_and_a_warmup_wraps_it() -> None:
    assert learning_rate(config(), STEPS_PER_EPOCH) == LR
    assert isinstance(learning_rate(config(lr_warmup_epochs=0.1), STEPS_PER_EPOCH), LinearWarmup)


@pytest.mark.parametrize(("epochs", "steps"), [(0.0, 0), (0.01, 1), (0.5, 5), (1.0, 10), (2.5, 25)])
def test_epochs_become_steps_and_any_warmup_is_at_least_one(epochs: float, steps: int) -> None:
    assert steps_in(epochs, STEPS_PER_EPOCH) == steps


@pytest.mark.parametrize("changes", [{"lr_schedule": "cosine"}, {"lr_warmup_epochs": 1.0}, {"beta_warmup_epochs": 1.0}])
def test_counting_epochs_in_steps_without_the_training_size_is_refused(changes: dict) -> None:
    with pytest.raises(ValueError, match="train_size is needed"):
        make_trainer(config(train_size=None, **changes))
