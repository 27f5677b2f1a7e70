"""A reproducible VAE pipeline: DVC stages, a Keras model, MLflow tracking.

This runs before any module of the package, so the Keras backend and the log levels of TensorFlow
and MLflow are set before anything can import them: no module depends on another having been imported first.
Only defaults are set; a value already in the environment wins.
"""

import os

from pipeline.core.quiet import apply_quiet_defaults

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
apply_quiet_defaults()
