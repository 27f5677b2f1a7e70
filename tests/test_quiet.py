"""Quiet by default: TensorFlow's start-up lines are held back, shown on request or when the import fails."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO_ROOT

from pipeline.core.quiet import VERBOSE_ENV, native_stderr_held, verbose

LOADS_THE_MODEL_PACKAGE = "import pipeline.model, tensorflow as tf; print(float(tf.reduce_sum(tf.ones(3))))"


def run_python(code: str, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in {VERBOSE_ENV, "TF_CPP_MIN_LOG_LEVEL"}}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env={**env, **environ},
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.integration
def test_importing_the_model_package_prints_nothing_on_stderr() -> None:
    done = run_python(LOADS_THE_MODEL_PACKAGE)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "3.0\n" and done.stderr == ""


@pytest.mark.integration
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


HEAVY = {"keras", "tensorflow", "jax"}
"""Packages whose native libraries print start-up lines unless ``pipeline.model`` imports them first."""


def _top_level_imports_in_order(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "pipeline").rglob("*.py")), ids=lambda path: path.name)
def test_a_module_outside_the_model_package_imports_it_before_keras(path: Path) -> None:
    """Keras, TensorFlow or JAX imported at the top of a module anywhere but ``pipeline/model`` come after
    ``pipeline.model``, whose import holds their start-up lines back; else a stage prints them (as the
    classifier stage once did, importing Keras one line too early)."""
    if path.parent.name == "model":
        return
    names = _top_level_imports_in_order(path)
    heavy = [index for index, name in enumerate(names) if name.split(".")[0] in HEAVY]
    if heavy:
        assert any(name.startswith("pipeline.model") for name in names[: heavy[0]]), (
            f"{path.relative_to(REPO_ROOT)} imports {names[heavy[0]]} before pipeline.model")
