"""Quiet by default: TensorFlow's start-up lines are held back, shown on request or when the import fails."""

import os
import subprocess
import sys

import pytest
from helpers import REPO_ROOT

from pipeline.core.quiet import VERBOSE_ENV, native_stderr_held, verbose

LOADS_THE_MODEL_PACKAGE = "import pipeline.model, tensorflow as tf; print(float(tf.reduce_sum(tf.ones(3))))"


def run_python(code: str, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in {VERBOSE_ENV, "TF_CPP_MIN_LOG_LEVEL"}}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env={**env, **environ},
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
def test_importing_the_model_package_prints_nothing_on_stderr() -> None:
    done = run_python(LOADS_THE_MODEL_PACKAGE)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "3.0\n" and done.stderr == ""


@pytest.mark.slow
def test_verbose_brings_tensorflows_start_up_lines_back() -> None:
    done = run_python(LOADS_THE_MODEL_PACKAGE, **{VERBOSE_ENV: "1"})
    assert done.returncode == 0 and "oneDNN" in done.stderr


@pytest.mark.parametrize(("value", "expected"), [("", False), ("0", False), ("no", False), ("1", True), ("yes", True)])
def test_verbose_reads_the_environment_variable(value: str, expected: bool) -> None:
    assert verbose({VERBOSE_ENV: value}) is expected


def test_held_native_output_is_dropped_on_success_and_replayed_on_failure(capfd: pytest.CaptureFixture[str]) -> None:
    with native_stderr_held():
        os.write(2, b"native chatter\n")
    assert capfd.readouterr().err == ""
    with pytest.raises(RuntimeError), native_stderr_held():
        os.write(2, b"why it failed\n")
        raise RuntimeError("import failed")
    assert capfd.readouterr().err == "why it failed\n"
