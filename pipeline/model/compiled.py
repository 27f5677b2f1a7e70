"""XLA compilation on whichever backend Keras runs: the one switch the compiled code shares.

The training loops (``tf_loop``, ``jax_loop``) and the likelihood estimator write their math once in
``keras.ops`` and compile it here: ``tf.function(jit_compile=True)`` on TensorFlow, ``jax.jit`` on JAX.
Both trace once per input shape and structure (``None`` for an absent label input included).
"""

from collections.abc import Callable
from typing import Any, TypeVar, cast

import keras

Function = TypeVar("Function", bound=Callable[..., Any])


def compiled(function: Function) -> Function:
    """``function`` as one XLA program on the loaded backend (TensorFlow or JAX)."""
    if keras.backend.backend() == "jax":
        import jax

        return cast(Function, jax.jit(function))  # jit keeps the call signature; its wrapper type says less
    import tensorflow as tf

    return tf.function(function, jit_compile=True)
