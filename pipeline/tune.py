"""``python -m pipeline tune run|worker|show|apply|recipe``: hyperparameter studies. Optuna decides, DVC executes,
MLflow records.

``run`` studies on one machine with K worker processes on Optuna's journal file (``.tune/journal.log``);
``worker`` joins a study from any host through a shared storage (PostgreSQL, from ``--storage`` or
``OPTUNA_STORAGE``); ``show`` lists the trials best first; ``apply`` brings the best trial's experiment into the
workspace, so ``dvc repro`` scores it on the test set and the gate compares it like any change; ``recipe``
writes its train params as a named recipe (``recipes/NAME.yaml``, see ``python -m pipeline recipe``).
"""

import argparse
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core.cli import run_stage, stage_parser
from pipeline.core.errors import PipelineError
from pipeline.core.params import load_params
from pipeline.core.paths import PARAMS_FILE, RECIPES_DIR, project_root
from pipeline.core.tables import add_table_options, show_table
from pipeline.tuning.space import TUNE_FILE, TuneSettings, load_settings, parse_overrides
from pipeline.tuning.workspace import JOURNAL_FILE, STOP_WAIT_S

if TYPE_CHECKING:
    import optuna

DEFAULT_STUDY = "vae-tune"
STUDY_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
"""Letters, digits, ``.``, ``_``, ``-``: the study names DVC experiments and git refs (``<study>-t<N>``)."""


def _settings(args: argparse.Namespace, budget: int | None = None) -> TuneSettings:
    """tune.yaml with ``--set`` (and a ``budget``), checked against params.yaml before anything else starts."""
    if not re.match(STUDY_NAME, args.study):
        raise PipelineError(f"--study {args.study!r}: use letters, digits, '.', '_' and '-' (it names git refs)")
    for option in ("trials", "workers"):
        if (getattr(args, option, None) or 1) < 1:
            raise PipelineError(f"--{option} must be at least 1, got {getattr(args, option)}")
    settings = load_settings(args.tune_file, load_params(args.params), parse_overrides(args.set))
    return settings.model_copy(update={"trials": budget}) if budget else settings


def _study_settings(args: argparse.Namespace, url: str, budget: int | None = None) -> TuneSettings:
    """The settings of the study: its stored ones when it exists (resumed or joined, whatever tune.yaml says
    now), else tune.yaml's; a ``--set`` that differs from a stored study's is refused."""
    local = _settings(args, budget)
    from pipeline.tracking.studies import NoSuchStudy
    from pipeline.tuning import study as studies

    try:
        stored = studies.settings_of(studies.ready(studies.load(url, args.study)))
    except NoSuchStudy:
        return local
    if args.set and stored != local.model_copy(update={"trials": stored.trials}):
        raise PipelineError(f"--set {' '.join(args.set)} differs from the settings study {args.study!r} has")
    return stored


def _storage(args: argparse.Namespace, default: Path | None = None) -> str:
    from pipeline.tracking.studies import STORAGE_ENV

    url = args.storage or os.environ.get(STORAGE_ENV) or (str(default) if default else "")
    if not url:
        raise PipelineError(f"no study storage: pass --storage URL or set {STORAGE_ENV}")
    return url


def _open(url: str, name: str, settings: TuneSettings, params: Path) -> "optuna.Study":
    """The study, created (with its MLflow parent run) or loaded; a resumed one first retries dead trials."""
    from pipeline.tracking.studies import PARENT_RUN_ATTR
    from pipeline.tracking.study_runs import create_parent_run
    from pipeline.tuning import study as studies

    def parent_run(study: "optuna.Study") -> None:
        study.set_user_attr(PARENT_RUN_ATTR, create_parent_run(_experiment(study, params), name, settings.as_attrs()))

    study = studies.create_or_load(url, name, settings, on_create=parent_run)
    studies.fail_dead_trials(study)
    return study


def _run(args: argparse.Namespace) -> None:
    root = project_root()
    url = str(root / JOURNAL_FILE)
    settings = _study_settings(args, url, budget=args.trials)
    from optuna.trial import TrialState

    from pipeline.tuning import study as studies

    study = _open(url, args.study, settings, args.params)
    studies.top_up(study, args.trials or study.user_attrs[studies.BUDGET_ATTR])
    waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    print(f"tune: study {args.study}: {waiting} trials to run with {args.workers} workers "
          f"(storage {JOURNAL_FILE})", flush=True)
    command = [sys.executable, "-m", "pipeline", "tune", "worker", "--study", args.study, "--storage", url,
               "--params", str(args.params), "--tune-file", str(args.tune_file), *_verbose(args)]
    workers = [subprocess.Popen([*command, "--workspace", str(index), "--seed-offset", str(index)],
                                start_new_session=True, stdin=subprocess.DEVNULL) for index in range(args.workers)]
    try:
        codes = [worker.wait() for worker in workers]
    except KeyboardInterrupt:
        _stop(workers)
        _close_runs(study, args.params)
        print(f"tune: stopped; resume with: python -m pipeline tune run --study {args.study}", file=sys.stderr)
        raise
    studies.fail_dead_trials(study)  # a worker that crashed left its trial running: back in the queue
    _close_runs(study, args.params)
    _summary(study)
    if any(codes):
        raise PipelineError(f"{sum(code != 0 for code in codes)} of {len(codes)} workers failed; see their lines above")


def _stop(workers: list[subprocess.Popen[bytes]]) -> None:
    """Ctrl-C each worker's process group (worker, DVC, stage) as a terminal would; kill what outlives the wait."""
    for worker in workers:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGINT)
    for worker in workers:
        try:
            worker.wait(timeout=STOP_WAIT_S + 30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def _close_runs(study: "optuna.Study", params: Path) -> None:
    """No training run of this host stays RUNNING once its trial's process is gone."""
    from pipeline.tracking.study_runs import close_abandoned_runs

    close_abandoned_runs(_experiment(study, params))


def _experiment(study: "optuna.Study", params: Path) -> str:
    """The MLflow experiment of the study's runs: its fixed ``train.experiment`` or params.yaml's."""
    return study.user_attrs["settings"]["fixed"].get("train.experiment") or load_params(params).train.experiment


def _summary(study: "optuna.Study") -> None:
    from pipeline.tracking.studies import PARENT_RUN_ATTR
    from pipeline.tracking.study_runs import record_best
    from pipeline.tuning.results import best_trial, objective_value
    from pipeline.tuning.worker import EXPERIMENT_ATTR

    states = [trial.state.name.lower().replace("fail", "failed") for trial in study.get_trials(deepcopy=False)]
    counts = ", ".join(f"{states.count(state)} {state}" for state in dict.fromkeys(sorted(states)))
    best = best_trial(study)
    if best is None:
        print(f"tune: study {study.study_name}: {counts}; no complete trial")
        return
    name = best.user_attrs.get(EXPERIMENT_ATTR, "")
    parent = study.user_attrs.get(PARENT_RUN_ATTR)  # none in a study that Optuna, not `tune run`, created
    if parent:
        record_best(parent, objective_value(best), best.number, name)
    print(f"tune: study {study.study_name}: {counts}; best {name} val_neg_elbo {best.value:.2f} "
          f"({', '.join(f'{key}={value}' for key, value in best.params.items())})")


def _worker(args: argparse.Namespace) -> None:
    """Join the study (creating it from tune.yaml when it does not exist yet) with its own stored settings."""
    url = _storage(args)
    stored = _study_settings(args, url)
    root = project_root()
    from pipeline.tracking.store import configure
    from pipeline.tuning import study as studies
    from pipeline.tuning.worker import Worker
    from pipeline.tuning.workspace import acquired

    study = _open(url, args.study, stored, args.params)
    seed = stored.seed + args.seed_offset if args.seed_offset is not None else None
    study.sampler = studies.make_sampler(seed)  # a worker on another host draws its own points
    with acquired(root, args.workspace) as workspace:
        workspace.sync()
        worker = Worker(study, stored, load_params(args.params), workspace, url, configure(root))
        ran = worker.run(limit=args.trials)
    print(f"tune: worker {workspace.path.name} ran {ran} trials of study {args.study}; none left to run"
          if args.trials is None or ran < args.trials else
          f"tune: worker {workspace.path.name} ran its {ran} trials of study {args.study}")


def _show(args: argparse.Namespace) -> None:
    url = _storage(args, project_root() / JOURNAL_FILE)
    from pipeline.tuning import study as studies
    from pipeline.tuning.results import trials_table, write_figures

    study = studies.load(url, args.study)
    show_table(trials_table(study), args.csv, args.markdown)
    if args.plots:
        written = write_figures(study, args.plots)
        print(f"tune: {', '.join(str(path) for path in written)}")


def _apply(args: argparse.Namespace) -> None:
    url = _storage(args, project_root() / JOURNAL_FILE)
    from pipeline.tuning import study as studies
    from pipeline.tuning.results import best_trial
    from pipeline.tuning.worker import COMMIT_ATTR, EXPERIMENT_ATTR
    from pipeline.tuning.workspace import Workspace

    study = studies.load(url, args.study)
    best = best_trial(study)
    if best is None:
        raise PipelineError(f"study {args.study!r} has no complete trial yet")
    name = best.user_attrs[EXPERIMENT_ATTR]
    here = Workspace(project_root(), project_root())
    studied, head = best.user_attrs.get(COMMIT_ATTR), here.commit()
    if studied and studied != head and not args.force:
        raise PipelineError(f"{name} ran on commit {studied[:8]}, HEAD is {head[:8]}: dvc exp apply brings back the "
                            f"experiment's whole tree, code included; git checkout {studied[:8]} first, or pass "
                            "--force to take its files as they were")
    listed = here.dvc("exp", "list", "--name-only", "--all-commits").stdout.split()
    if name not in listed:  # run on another host: fetch it from the git remote (and its outputs from DVC's)
        here.dvc("exp", "pull", "origin", name)
    applied = here.dvc("exp", "apply", name, check=False)
    output = applied.stdout + applied.stderr
    # The experiment's dvc.lock still names the outputs of the stages after train at the baseline; DVC applies
    # params and lock first, then fails to check out those outputs where they were never built. dvc repro will.
    if applied.returncode != 0 and "Checkout failed for following targets" not in output:
        raise PipelineError(f"dvc exp apply {name} exited {applied.returncode}: {output.strip()[-2000:]}")
    print(f"tune: applied {name} (val_neg_elbo {best.value:.2f}): "
          f"{', '.join(f'{key}={value}' for key, value in best.params.items())}; "
          "dvc repro now scores it on the test set")


def _recipe(args: argparse.Namespace) -> None:
    """Write the best trial's train params that differ from the notebook's as ``recipes/NAME.yaml``."""
    url = _storage(args, project_root() / JOURNAL_FILE)
    from pipeline.recipe import RECIPE_PARAMS, recipe_text, write_recipe
    from pipeline.tuning import study as studies
    from pipeline.tuning.results import best_train_params
    from pipeline.tuning.worker import EXPERIMENT_ATTR

    study = studies.load(url, args.study)
    try:
        best, values = best_train_params(study, load_params(args.params), RECIPE_PARAMS)
    except ValueError as error:
        raise PipelineError(str(error)) from None
    states = [trial.state.name.lower() for trial in study.get_trials(deepcopy=False)]
    counts = ", ".join(f"{states.count(state)} {state}" for state in dict.fromkeys(sorted(states)))
    fixed = ", ".join(f"{key}={value}" for key, value in studies.settings_of(study).fixed.items())
    comments = [f"{args.name}: best of tune study {args.study} ({len(states)} trials: {counts}), "
                f"{best.user_attrs.get(EXPERIMENT_ATTR)}, validation -ELBO {best.value:.2f}",
                f"The study fixed {fixed}; floats to 3 digits. Written by: python -m pipeline tune recipe "
                f"{args.name} --study {args.study}", *args.note]
    path = args.recipes / f"{args.name}.yaml"
    write_recipe(path, recipe_text(comments, values), replace=args.force)
    print(f"tune: wrote {path} ({len(values)} params) from {best.user_attrs.get(EXPERIMENT_ATTR)}; "
          f"python -m pipeline recipe apply {args.name} puts them in params.yaml")


def _verbose(args: argparse.Namespace) -> list[str]:
    return ["-v"] if args.verbose else []


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline tune <run|worker|show|apply|recipe> [options]``: parse ``argv``, run, return the exit
    code."""
    parser = stage_parser("tune", __doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="{run,worker,show,apply,recipe}")
    run = commands.add_parser("run", help="run a study on this machine with K worker processes")
    worker = commands.add_parser("worker", help="join a study through a shared storage (PostgreSQL)")
    show = commands.add_parser("show", help="the study's trials, best first")
    apply = commands.add_parser("apply", help="dvc exp apply the best trial's experiment")
    recipe = commands.add_parser("recipe", help="write the best trial's train params as recipes/NAME.yaml")
    for sub in (run, worker, show, apply, recipe):
        sub.add_argument("--study", default=DEFAULT_STUDY, help=f"study name (default: {DEFAULT_STUDY})")
        sub.add_argument("--params", type=Path, default=PARAMS_FILE, help=f"params file (default: {PARAMS_FILE})")
        sub.add_argument("-v", "--verbose", action="store_true", help="show third-party output too")
    for sub in (run, worker):
        sub.add_argument("--trials", type=int, help="run: the study's budget (default: tune.yaml's trials); "
                                                    "worker: at most this many trials from this worker")
        sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="fix a param for every trial, as dvc exp run -S (repeatable)")
        sub.add_argument("--tune-file", type=Path, default=TUNE_FILE, help=f"search space (default: {TUNE_FILE})")
    run.add_argument("--workers", type=int, default=2, help="worker processes on this machine (default: 2)")
    for sub in (worker, show, apply, recipe):
        sub.add_argument("--storage", help="Optuna storage URL (default: $OPTUNA_STORAGE"
                                           f"{'' if sub is worker else f', else {JOURNAL_FILE}'})")
    worker.add_argument("--workspace", type=int, help="prefer workspace .tune/workspaces/w<N>")
    worker.add_argument("--seed-offset", type=int, help=argparse.SUPPRESS)
    show.add_argument("--plots", type=Path, metavar="DIR", help="write the optimisation history and the "
                                                                "param importances as PNGs in DIR")
    add_table_options(show)
    apply.add_argument("--force", action="store_true", help="apply even when HEAD is not the commit the trial ran on")
    recipe.add_argument("name", help="the recipe's file name without .yaml")
    recipe.add_argument("--note", action="append", default=[], help="a comment line to add (repeatable)")
    recipe.add_argument("--recipes", type=Path, default=RECIPES_DIR, help=f"recipe folder (default: {RECIPES_DIR})")
    recipe.add_argument("--force", action="store_true", help="replace the recipe file if it exists")
    bodies = {"run": _run, "worker": _worker, "show": _show, "apply": _apply, "recipe": _recipe}
    return run_stage("tune", lambda args: bodies[args.command](args), parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
