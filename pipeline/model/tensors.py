"""``Tensor``: the type of the values ``keras.ops`` takes and returns on the loaded backend.

A ``tf.Tensor``, a ``jax.Array`` or a NumPy array, depending on the backend and on whether the code runs
eagerly or inside a compiled program. Keras 3 ships no type hints, so the type checker cannot tell them
apart anyway: the alias is ``Any`` and documents, in each signature, which values are tensors.
"""

from typing import Any, TypeAlias

Tensor: TypeAlias = Any
