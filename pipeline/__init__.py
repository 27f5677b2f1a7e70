"""A reproducible VAE pipeline: DVC stages, a Keras model, MLflow tracking.

This runs before any module of the package, so the log levels of TensorFlow and MLflow are set before
anything can import them: no module depends on another having been imported first. Only defaults are
set; a value already in the environment wins, except matplotlib's backend (below). The Keras backend is
not set here: the stages that load Keras set it from the param ``train.backend`` (``pipeline.core.backend``);
other code that imports ``pipeline.model`` gets Keras' own choice (``KERAS_BACKEND``, else
``~/.keras/keras.json``, else TensorFlow).
"""

import os

from pipeline.core.quiet import apply_quiet_defaults

# The report draws Figure objects on their own Agg canvases and needs no backend, but matplotlib validates
# $MPLBACKEND when it is imported and refuses one it cannot load (a notebook's
# module://matplotlib_inline.backend_inline, a GUI without a display): headless Agg, whatever the shell says.
os.environ["MPLBACKEND"] = "agg"
apply_quiet_defaults()
