"""Default locations of the pipeline's files, relative to the repository root.

dvc.yaml passes these same paths to each stage on its command line; the defaults here
serve a person who runs a stage by hand. Nothing in this module touches the disk.
"""

from pathlib import Path

PARAMS_FILE = Path("params.yaml")

RAW_DIR = Path("data/raw")
PREPARED_DIR = Path("data/prepared")

MODELS_DIR = Path("models")
MODEL_FILE = MODELS_DIR / "vae.keras"
RUN_FILE = MODELS_DIR / "run.json"
CHECKPOINT_DIR = Path("checkpoints")

REPORTS_DIR = Path("reports")
DATA_STATS_FILE = REPORTS_DIR / "data_stats.json"
TRAIN_HISTORY_FILE = REPORTS_DIR / "train_history.csv"
METRICS_FILE = REPORTS_DIR / "metrics.json"
PER_CLASS_FILE = REPORTS_DIR / "per_class.csv"

MLFLOW_DB_FILE = Path("mlflow.db")
MLFLOW_ARTIFACTS_DIR = Path("mlartifacts")
