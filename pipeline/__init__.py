"""A reproducible VAE pipeline: DVC stages, a Keras model, MLflow tracking.

This runs before any module of the package, so the Keras backend and the log levels of TensorFlow
and MLflow are set before anything can import them: no module depends on another having been imported first.
Only defaults are set; a value already in the environment wins, except matplotlib's backend (below).
"""

import os

from pipeline.core.quiet import apply_quiet_defaults

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# The report draws Figure objects on their own Agg canvases and needs no backend, but matplotlib validates
# $MPLBACKEND when it is imported and refuses one it cannot load (a notebook's
# module://matplotlib_inline.backend_inline, a GUI without a display): headless Agg, whatever the shell says.
os.environ["MPLBACKEND"] = "agg"
apply_quiet_defaults()
