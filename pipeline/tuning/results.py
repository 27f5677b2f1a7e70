"""What a study found: its trials as a table, best first, and Optuna's figures of its history and importances."""

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from matplotlib.axes import Axes

from pipeline.core import atomic_files
from pipeline.core.params import Params
from pipeline.tracking.studies import RUN_ATTR
from pipeline.tuning.space import trial_params
from pipeline.tuning.study import FAILURE_ATTR, HOST_ATTR, settings_of
from pipeline.tuning.worker import EXPERIMENT_ATTR

STATE_ORDER = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1, TrialState.RUNNING: 2, TrialState.WAITING: 3,
               TrialState.FAIL: 4}
"""Best first: complete trials by value, then pruned ones by their last value, then the rest by number."""
FIGURES = ("optimization_history.png", "param_importances.png")
SHORT_ID = 8
SIGNIFICANT_DIGITS = 3
"""A recipe's floats: the study's draws to 3 digits (a learning rate of 0.00912, not 0.009123456789)."""


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, params, value, seconds, host, DVC experiment, MLflow run, best first.

    A pruned trial's value is its last reported validation -ELBO; a failed one's cause is in ``failure``.
    """
    rows = [_row(trial) for trial in sorted(study.get_trials(deepcopy=False), key=_rank)]
    table = pd.DataFrame(rows)
    keys = [key for key in table.columns if key.startswith(("data.", "model.", "train.", "evaluate.", "report."))]
    columns = ["trial", "state", *keys, "val_neg_elbo", "seconds", "host", "experiment", "mlflow_run", "failure"]
    return table.reindex(columns=columns)


def _rank(trial: FrozenTrial) -> tuple[int, float, int]:
    value = trial.value if trial.value is not None else _last_value(trial)
    return STATE_ORDER[trial.state], value if value is not None else float("inf"), trial.number


def _last_value(trial: FrozenTrial) -> float | None:
    steps = trial.intermediate_values
    return steps[max(steps)] if steps else None


def _row(trial: FrozenTrial) -> dict[str, object]:
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() \
        if trial.datetime_complete and trial.datetime_start else None
    value = trial.value if trial.value is not None else _last_value(trial)
    if trial.state == TrialState.WAITING:  # a retry not yet claimed: it has only its params
        return {"trial": trial.number, "state": trial.state.name, **trial.params}
    return {
        "trial": trial.number, "state": trial.state.name, **trial.params,
        "val_neg_elbo": round(value, 3) if value is not None else None,
        "seconds": round(seconds) if seconds is not None else None,
        "host": trial.user_attrs.get(HOST_ATTR), "experiment": trial.user_attrs.get(EXPERIMENT_ATTR),
        "mlflow_run": (trial.user_attrs.get(RUN_ATTR) or "")[:SHORT_ID] or None,
        "failure": trial.user_attrs.get(FAILURE_ATTR) or _retried(trial),
    }


def _retried(trial: FrozenTrial) -> str | None:
    if trial.state != TrialState.FAIL:
        return None
    return "worker stopped; retried" if trial.user_attrs.get(HOST_ATTR) else None


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The complete trial with the lowest validation -ELBO, or None before any is complete."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return min(complete, key=objective_value) if complete else None


def objective_value(trial: FrozenTrial) -> float:
    """A complete trial's validation -ELBO (Optuna types it optional: a running trial has none yet)."""
    return math.inf if trial.value is None else trial.value


def best_train_params(study: optuna.Study, params: Params, keys: Sequence[str]) -> tuple[FrozenTrial, dict[str, Any]]:
    """The best complete trial and the params among ``keys`` (dotted train keys) that it trains with and that
    differ from their defaults, the notebook's recipe: floats to ``SIGNIFICANT_DIGITS``, in ``keys``' order.

    Its params are params.yaml's (``params``) with the study's fixed ones and the trial's point, as the trial ran.
    Raises ``ValueError`` when no trial is complete.
    """
    best = best_trial(study)
    if best is None:
        raise ValueError(f"study {study.study_name!r} has no complete trial yet")
    trained = trial_params(params, settings_of(study), best.params).flat()
    defaults = Params().flat()
    return best, {key: _significant(trained[key]) for key in keys if trained[key] != defaults[key]}


def _significant(value: Any) -> Any:
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}") if isinstance(value, float) else value


def write_figures(study: optuna.Study, folder: Path) -> list[Path]:
    """The optimisation history and the params' importances (Optuna's fANOVA) as PNGs in ``folder``.

    The importances need two complete trials that differ; with fewer, only the history is drawn.
    """
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as figures

    drawers: dict[str, Callable[[optuna.Study], Axes]] = {FIGURES[0]: figures.plot_optimization_history}
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= 2:
        drawers[FIGURES[1]] = figures.plot_param_importances
    written = []
    for name, draw in drawers.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            axes = draw(study)
        figure = axes.figure.get_figure(root=True)  # the Figure itself, never a SubFigure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        with atomic_files.atomic_path(folder / name) as temporary:
            figure.savefig(temporary, dpi=100, format="png")
        plt.close(figure)
        written.append(folder / name)
    return written
