"""Quiet by default: third-party start-up chatter is held back unless ``PIPELINE_VERBOSE`` is set.

TensorFlow's native libraries print lines while they load (oneDNN, the CUDA stub, ``cuInit`` on a
machine without a GPU), before any log level applies: no environment variable stops them
(TensorFlow 2.21). So what native code writes to file descriptor 2 during that import is kept in
a temporary file and shown only when the import fails or the user asked for it.
"""

import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

VERBOSE_ENV = "PIPELINE_VERBOSE"
QUIET_DEFAULTS = {
    "TF_CPP_MIN_LOG_LEVEL": "2",  # TensorFlow's own INFO and WARNING lines
    "MLFLOW_LOGGING_LEVEL": "WARNING",  # MLflow's INFO lines, e.g. on creating a store
}


def verbose(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the user asked for third-party output (``PIPELINE_VERBOSE=1`` or a stage's ``-v``)."""
    return environ.get(VERBOSE_ENV, "").strip().lower() not in {"", "0", "false", "no"}


def apply_quiet_defaults() -> None:
    """Set the third-party log levels to quiet, unless verbose or already chosen by the user."""
    if not verbose():
        for name, value in QUIET_DEFAULTS.items():
            os.environ.setdefault(name, value)


def make_verbose() -> None:
    """Turn verbose on for this process and its children, undoing the quiet defaults set here."""
    os.environ[VERBOSE_ENV] = "1"
    for name, value in QUIET_DEFAULTS.items():
        if os.environ.get(name) == value:
            del os.environ[name]


@contextmanager
def native_stderr_held() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file inside the block; replay it if the block raises.

    Under ``PIPELINE_VERBOSE`` the block runs untouched.
    """
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.buffer.write(held.read())
            sys.stderr.flush()
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
