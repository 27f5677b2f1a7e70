"""A reproducible VAE pipeline: DVC stages, a Keras model, MLflow tracking.

This runs before any module of the package, so the Keras backend and TensorFlow's log level are
set before anything can import Keras: no module depends on another having been imported first.
Only defaults are set; a value already in the environment wins.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
