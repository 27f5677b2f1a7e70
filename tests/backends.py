"""Running a test's work on each Keras backend, so one parametrised test covers TensorFlow and JAX.

Keras fixes its backend at import, once per process. The test process runs on TensorFlow (conftest.py);
work for JAX runs in one long-lived worker process started with ``KERAS_BACKEND=jax``, whose start-up is
paid once per session. The work must be a module-level function whose arguments and result pickle.
"""

import importlib.util
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from functools import cache
from typing import TypeVar

import pytest

IN_PROCESS = "tensorflow"
WORK_TIMEOUT_S = 600
Result = TypeVar("Result")

needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                               reason="JAX is not installed here: uv sync --extra jax")
BACKENDS = [pytest.param("tensorflow", id="tensorflow"), pytest.param("jax", id="jax", marks=needs_jax)]
"""The backends as pytest params; JAX's skip where the optional extra is absent (``.ci/run`` installs it)."""


def _use_backend(backend: str) -> None:
    """The worker's initializer: runs before any task is unpickled, so before Keras is imported there."""
    os.environ["KERAS_BACKEND"] = backend


@cache
def _worker(backend: str) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_use_backend, initargs=(backend,))


def on_backend(backend: str, work: Callable[..., Result], *args: object, **kwargs: object) -> Result:
    """``work(*args, **kwargs)`` with Keras on ``backend``: here for TensorFlow, in that backend's worker else.

    Exceptions raised by ``work`` are raised here too.
    """
    if backend == IN_PROCESS:
        return work(*args, **kwargs)
    return _worker(backend).submit(work, *args, **kwargs).result(timeout=WORK_TIMEOUT_S)
