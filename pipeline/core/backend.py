"""Which Keras backend a stage runs on: the param ``train.backend``, set before Keras loads.

Keras fixes its backend when it is first imported, from ``KERAS_BACKEND``, else ``~/.keras/keras.json``,
else TensorFlow. The pipeline's numbers depend on the backend (its random streams differ), so the
param decides, as every other thing that changes the numbers: the stage writes it into ``KERAS_BACKEND``
(which Keras prefers to the per-user file) for itself and its children. A ``KERAS_BACKEND`` already in
the environment that names another backend is refused with one line instead of silently winning over
params.yaml, and so is one the pipeline cannot run on (``torch``, ``openvino``, a typo). Train, evaluate
and report all run on ``train.backend``: a model trained on JAX is scored and drawn on JAX, and a host
with JAX but no working TensorFlow needs TensorFlow for nothing but serving the logged models.
"""

import importlib.util
import os
import sys
from collections.abc import MutableMapping
from typing import Literal

from pipeline.core.errors import PipelineError, clipped

Backend = Literal["tensorflow", "jax"]
BACKENDS: tuple[Backend, ...] = ("tensorflow", "jax")
BACKEND_ENV = "KERAS_BACKEND"
EXTRAS: dict[str, str] = {"tensorflow": "uv sync (TensorFlow is a main dependency)", "jax": "uv sync --extra jax"}
"""How to install each backend's package in this project."""
MAX_SHOWN_CHARS = 40
"""An environment value is echoed at most this long, so a stray variable never floods the error line."""


class BackendError(PipelineError):
    """``KERAS_BACKEND`` disagrees with ``train.backend``, names a backend the pipeline cannot run on, or the
    backend's package is missing."""


def select_backend(backend: Backend, environ: MutableMapping[str, str] = os.environ) -> None:
    """Make ``backend`` Keras' backend in this process and its children; call it before Keras is imported.

    Raises ``BackendError`` when ``KERAS_BACKEND`` in ``environ`` names another backend, when Keras is
    already loaded on another one, or when ``backend``'s package is not installed (naming the extra).
    """
    chosen = environ.get(BACKEND_ENV, "").strip()
    if chosen and chosen != backend:
        shown = clipped(chosen, MAX_SHOWN_CHARS)
        supported = " or ".join(BACKENDS)
        if chosen not in BACKENDS:
            raise BackendError(f"{BACKEND_ENV}={shown} in the environment: the pipeline runs on {supported}, "
                               f"chosen by train.backend in params.yaml; unset {BACKEND_ENV}")
        raise BackendError(f"{BACKEND_ENV}={shown} in the environment disagrees with train.backend: {backend}; "
                           f"the param decides (unset {BACKEND_ENV}, or run with -S train.backend={chosen})")
    loaded = loaded_backend()
    if loaded is not None and loaded != backend:
        raise BackendError(f"Keras is already loaded on {loaded} in this process, train.backend is {backend}; "
                           "run the stage in a fresh process")
    if not installed(backend):
        raise BackendError(f"train.backend: {backend} needs the {backend} package, which is not installed; "
                           f"install it with: {EXTRAS[backend]}")
    environ[BACKEND_ENV] = backend


def installed(package: str) -> bool:
    """Whether ``package`` can be imported, without importing it (a broken import path counts as missing)."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def loaded_backend() -> str | None:
    """The backend of the Keras already imported in this process, or ``None`` before Keras loads."""
    keras = sys.modules.get("keras")
    backend = getattr(getattr(keras, "backend", None), "backend", None)
    return backend() if callable(backend) else None
