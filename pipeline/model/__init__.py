"""The VAE in Keras: layers and losses, the compiled training loops, checkpoints, likelihood, loading, serving views.

Importing this package imports Keras on the backend chosen before (``pipeline.core.backend``), once,
with the lines its native libraries print while loading held back (``pipeline.core.quiet``); finding
the devices here makes the ``cuInit`` line of a machine without a GPU come inside that hold too.
``PIPELINE_VERBOSE=1`` shows them.
"""

from pipeline.core.quiet import native_stderr_held

with native_stderr_held():
    import keras

    if keras.backend.backend() == "jax":
        import jax

        jax.devices()
        # Keras imports TensorFlow whenever it is installed, on any backend, to seed it and to ask whether an
        # object it saves is a tf.TensorShape (keras-team/keras#18455): 4 s of CPU in a process that never uses
        # it. Its lazy handle is told TensorFlow is absent; tests/test_backends.py checks that it stays unloaded.
        from keras.src.utils.module_utils import tensorflow as lazy_tensorflow

        lazy_tensorflow._available = False
    else:
        import tensorflow

        tensorflow.config.list_physical_devices()
