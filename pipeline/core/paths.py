"""Default locations of the pipeline's files, relative to the repository root, and that root.

dvc.yaml passes these same paths to each stage on its command line; the defaults here
serve a person who runs a stage by hand. Nothing in this module writes to the disk.
"""

import os
from pathlib import Path

PARAMS_FILE = Path("params.yaml")
RECIPES_DIR = Path("recipes")
"""Named sets of train params that ``python -m pipeline recipe apply`` writes into params.yaml."""

RAW_DIR = Path("data/raw")
PREPARED_DIR = Path("data/prepared")

MODELS_DIR = Path("models")
MODEL_FILE = MODELS_DIR / "vae.keras"
RUN_FILE = MODELS_DIR / "run.json"
CLASSIFIER_FILE = MODELS_DIR / "classifier.keras"
CHECKPOINT_DIR = Path("checkpoints")

REPORTS_DIR = Path("reports")
DATA_STATS_FILE = REPORTS_DIR / "data_stats.json"
TRAIN_HISTORY_FILE = REPORTS_DIR / "train_history.csv"
METRICS_FILE = REPORTS_DIR / "metrics.json"
PER_CLASS_FILE = REPORTS_DIR / "per_class.csv"
MODEL_KIND_FILE = REPORTS_DIR / "model.json"
CLASSIFIER_METRICS_FILE = REPORTS_DIR / "classifier.json"

MLFLOW_DB_FILE = Path("mlflow.db")
MLFLOW_ARTIFACTS_DIR = Path("mlartifacts")

TEMPORARY_EXPERIMENT_DIR = os.path.join(".dvc", "tmp", "exps")
"""Where DVC runs queued and ``--temp`` experiments, in copies it deletes afterwards."""


def project_root() -> Path:
    """The real project root: ``DVC_ROOT`` (or the working directory), outside any DVC temp copy."""
    root = Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()
    text = str(root)
    marker = f"{os.sep}{TEMPORARY_EXPERIMENT_DIR}{os.sep}"
    return Path(text.split(marker, 1)[0]) if marker in text else root


def from_project_root(path: str | Path, root: Path | None = None) -> Path:
    """``path`` from the environment or params, a relative one taken against the project root (not the
    working directory, which is a deleted copy under a DVC temporary experiment)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else (root or project_root()) / path
