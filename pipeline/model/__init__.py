"""The VAE in Keras: layers and losses, the compiled training loops, checkpoints, likelihood, the trained VAE,
serving views.

Importing this package imports Keras on the backend chosen before (``pipeline.core.backend``), once,
with the lines its native libraries print while loading held back (``pipeline.core.quiet``); finding
the devices here makes the ``cuInit`` line of a machine without a GPU come inside that hold too.
``PIPELINE_VERBOSE=1`` shows them.

It also pins what a user's Keras configuration would otherwise change: ``keras.json`` (in ``$KERAS_HOME``
or ``~/.keras``) sets the float type, the fuzz factor ε and the image layout of every process, and
``$KERAS_MAX_STEPS_PER_EPOCH`` makes ``predict`` return only its first batches. The pipeline computes in
the data contract's float32 (``pipeline.data.splits.PIXEL_DTYPE``) with Keras' own defaults, whatever
those say; a ``keras.json`` that Keras refuses to read is one line naming it.
"""

import os

from pipeline.core.errors import PipelineError
from pipeline.core.quiet import native_stderr_held
from pipeline.data.splits import PIXEL_DTYPE


class KerasConfigError(PipelineError):
    """The user's ``keras.json`` holds a value that TensorFlow or Keras refuses at import."""


_refused: Exception | None = None
with native_stderr_held():
    try:
        import keras

        if keras.backend.backend() == "jax":
            import jax

            jax.devices()
            # Keras imports TensorFlow whenever it is installed, on any backend, to seed it and to ask whether an
            # object it saves is a tf.TensorShape (keras-team/keras#18455): 4 s of CPU in a process that never
            # uses it. Its lazy handle is told TensorFlow is absent; tests/test_backends.py checks it stays unloaded.
            from keras.src.utils.module_utils import tensorflow as lazy_tensorflow

            lazy_tensorflow._available = False
        else:
            import tensorflow

            tensorflow.config.list_physical_devices()
    except (AssertionError, ValueError) as error:  # how TF's and Keras' readers of keras.json refuse a value
        _refused = error
if _refused is not None:
    folder = os.environ.get("KERAS_HOME") or "~/.keras"
    raise KerasConfigError(f"Keras refuses its configuration file {folder}/keras.json"
                           f"{f': {_refused}' if str(_refused) else ''}; fix or remove it (the pipeline sets "
                           "floatx, epsilon and image_data_format itself)")

keras.config.set_floatx(PIXEL_DTYPE.name)
keras.config.set_epsilon(1e-7)
keras.config.set_image_data_format("channels_last")
keras.config.set_max_epochs(None)
keras.config.set_max_steps_per_epoch(None)
