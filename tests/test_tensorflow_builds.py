"""Which TensorFlow build each install command of docs/environment.md installs, on each platform with wheels.

``tensorflow-cpu`` and ``tensorflow`` install the same files (the ``tensorflow`` module), so an environment must
hold exactly one of them: the CPU-only build on Linux x86_64, the CUDA build on a GPU host, the one ``tensorflow``
wheel elsewhere. ``pip install .`` reads the project's own requirements; ``uv sync`` reads uv.lock, seen here
through ``uv export --locked``. Their markers are evaluated for each platform as pip and uv evaluate them.
"""

import functools
import shutil
import subprocess
import tomllib

import pytest
from helpers import REPO_ROOT
from packaging.requirements import Requirement

PLATFORMS = {
    "linux-x86_64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"},
    "linux-aarch64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64"},
    "macos-arm64": {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64"},
    "windows-amd64": {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64"},
}
"""The platforms TensorFlow 2.21 has wheels for, as PEP 508 markers see them."""
GPU_COMMAND = "uv sync --extra gpu --no-install-package tensorflow-cpu"
UV_COMMANDS = {
    "uv sync": (),
    "uv sync --extra jax": ("--extra", "jax"),
    GPU_COMMAND: ("--extra", "gpu", "--no-emit-package", "tensorflow-cpu"),
}
BUILDS = {"tensorflow", "tensorflow-cpu"}


@functools.cache
def locked_requirements(*options: str) -> tuple[Requirement, ...]:
    """The locked requirements ``uv sync`` with these options installs, each with its platform marker."""
    if shutil.which("uv") is None:
        pytest.skip("uv is not on PATH")
    answer = subprocess.run(["uv", "export", "--locked", "--offline", "--no-hashes", "--no-emit-project",
                             "--format", "requirements.txt", *options],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True)
    return tuple(Requirement(line) for line in answer.stdout.splitlines() if line and not line.startswith(("#", " ")))


def installed_on(platform: str, requirements: tuple[Requirement, ...], extra: str = "") -> set[str]:
    environment = {**PLATFORMS[platform], "extra": extra}
    return {requirement.name for requirement in requirements
            if requirement.marker is None or requirement.marker.evaluate(environment)}


def expected_build(platform: str, gpu: bool) -> str:
    return "tensorflow-cpu" if platform == "linux-x86_64" and not gpu else "tensorflow"


@pytest.mark.parametrize("command", UV_COMMANDS)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_each_platform_and_uv_command_gets_exactly_one_tensorflow_build(platform: str, command: str) -> None:
    gpu = command == GPU_COMMAND
    installed = installed_on(platform, locked_requirements(*UV_COMMANDS[command]))
    assert installed & BUILDS == {expected_build(platform, gpu)}
    cuda = {name for name in installed if name.startswith("nvidia-")}
    assert bool(cuda) == (platform.startswith("linux") and gpu), sorted(cuda)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_plain_pip_install_gets_exactly_one_tensorflow_build_on_each_platform(platform: str) -> None:
    """pip sees ``project.dependencies`` only: no uv groups, no lock; tensorflow-cpu must come by a marker."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    requirements = tuple(Requirement(line) for line in project["dependencies"])
    assert installed_on(platform, requirements) & BUILDS == {expected_build(platform, gpu=False)}
    cuda_build = tuple(Requirement(line) for line in project["optional-dependencies"]["gpu"])
    linux = platform.startswith("linux")
    assert installed_on(platform, cuda_build, extra="gpu") == ({"tensorflow"} if linux else set())
