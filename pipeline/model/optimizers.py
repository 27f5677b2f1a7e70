"""The optimizer and its per-step learning-rate schedule, from the train params, in backend-neutral Keras.

Each optimizer setting is a param named ``<optimizer>_<Keras argument>`` (``rmsprop_rho``, ``adam_beta_2``),
passed to Keras unchanged, so Keras' formulas and defaults hold: RMSprop adds its ε inside the square root,
√(v + ε), and Adam adds its ε to √v before the bias correction of v ("epsilon hat" of Kingma and Ba 2015, sec. 2).
torch adds both outside, to √v and to √v̂. A schedule is a Keras ``LearningRateSchedule``, which the optimizer
evaluates at its own iteration count on every update, so it runs inside a compiled epoch and resumes with
the optimizer's variables from a checkpoint.
"""

from typing import TYPE_CHECKING

import keras
from keras import ops
from keras.optimizers.schedules import LearningRateSchedule as Schedule

from pipeline.model.tensors import Tensor

if TYPE_CHECKING:
    from pipeline.model.trainer import TrainConfig


OPTIMIZERS = {
    "rmsprop": keras.optimizers.RMSprop,
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
}


class LinearWarmup(Schedule):
    """``peak · (step + 1) / warmup_steps`` for the first ``warmup_steps`` steps (counted from 0), then
    ``after(step − warmup_steps)``: the first step already learns and the last warm-up step is at ``peak``.

    ``after`` is a schedule starting at ``peak``; ``None`` keeps ``peak`` after the warm-up.
    """

    def __init__(self, peak: float, warmup_steps: int, after: Schedule | None = None) -> None:
        super().__init__()
        self.peak, self.warmup_steps, self.after = peak, warmup_steps, after

    def __call__(self, step: Tensor) -> Tensor:
        step = ops.cast(step, "float32")
        rising = self.peak * (step + 1.0) / self.warmup_steps
        later = self.peak if self.after is None else self.after(ops.maximum(step - self.warmup_steps, 0.0))
        return ops.where(step < self.warmup_steps, rising, later)


def steps_in(epochs: float, steps_per_epoch: int) -> int:
    """Optimizer steps in ``epochs`` (a fraction allowed), at least 1 when ``epochs`` > 0, else 0."""
    return max(1, round(epochs * steps_per_epoch)) if epochs > 0 else 0


def learning_rate(config: "TrainConfig", steps_per_epoch: int) -> "float | Schedule":
    """The constant rate (a float, as Keras keeps it in a variable) or the schedule over the whole training.

    Cosine (``CosineDecay``, alpha = ``lr_final_fraction``) and exponential decay (``ExponentialDecay``, rate
    ``lr_final_fraction`` over the decay's steps) run from the end of the warm-up to the last step, where they
    reach ``lr_final_fraction · learning_rate``.
    """
    warmup = steps_in(config.lr_warmup_epochs, steps_per_epoch)
    if config.lr_schedule == "constant" and not warmup:
        return float(config.learning_rate)
    decay_steps = max(1, config.epochs * steps_per_epoch - warmup)
    after = None  # constant
    if config.lr_schedule == "cosine":
        after = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps,
                                                       alpha=config.lr_final_fraction)
    elif config.lr_schedule == "exponential":
        after = keras.optimizers.schedules.ExponentialDecay(config.learning_rate, decay_steps,
                                                            decay_rate=config.lr_final_fraction)
    return LinearWarmup(config.learning_rate, warmup, after) if warmup else after


def make_optimizer(config: "TrainConfig", steps_per_epoch: int = 1) -> keras.optimizers.Optimizer:
    """The Keras optimizer of ``config.optimizer`` with its own settings from ``config`` and the schedule.

    ``steps_per_epoch`` turns the schedule's epochs into steps; it is unused by the constant rate.
    """
    prefix = f"{config.optimizer}_"
    settings = {name.removeprefix(prefix): getattr(config, name)
                for name in config.__dataclass_fields__ if name.startswith(prefix)}
    return OPTIMIZERS[config.optimizer](learning_rate=learning_rate(config, steps_per_epoch), **settings)

