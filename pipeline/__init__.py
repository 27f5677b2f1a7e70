"""A reproducible VAE pipeline: DVC stages, a Keras model, MLflow tracking.

This runs before any module of the package, so the Keras backend and the log levels of TensorFlow
and MLflow are set before anything can import them: no module depends on another having been imported first.
Only defaults are set; a value already in the environment wins.
"""

import os

from pipeline.core.quiet import verbose

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if not verbose():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's own INFO and WARNING lines
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow's INFO lines, e.g. on creating a store
