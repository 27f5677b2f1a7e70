"""The package's folders depend on each other in one direction, so each can be read without the ones above it."""

from pathlib import Path

import pytest
from helpers import REPO_ROOT, pipeline_imports, top_level_imports

PACKAGE = REPO_ROOT / "pipeline"
LAYERS = {"core": 0, "data": 1, "model": 2, "sample_quality": 2, "tracking": 3, "reporting": 4, "gate": 4,
          "tuning": 4}
"""A sub-package may import its own layer and lower ones, never a higher one."""
COMMANDS = {"__init__", "__main__", "download", "prepare", "train", "classifier", "evaluate", "report", "check",
            "compare", "recipe", "tune"}
HEAVY = {"tensorflow": ("model",), "keras": ("model", "sample_quality"), "jax": ("model",), "mlflow": ("tracking",)}
"""Third-party packages that cost seconds to import, and the only sub-packages that import them at the top."""


SUBPACKAGES = sorted(path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file())


def test_the_top_level_holds_only_the_commands_and_each_subpackage_is_a_layer() -> None:
    assert {path.stem for path in PACKAGE.glob("*.py")} == COMMANDS
    assert set(SUBPACKAGES) == set(LAYERS)


@pytest.mark.parametrize("subpackage", SUBPACKAGES)
def test_a_subpackage_imports_no_later_layer_and_no_command(subpackage: str) -> None:
    for path in sorted((PACKAGE / subpackage).glob("*.py")):
        for module in pipeline_imports(path):
            parts = module.split(".")
            assert len(parts) > 2 or parts[1] in SUBPACKAGES, f"{path.name} imports the command {module}"
            assert LAYERS[parts[1]] <= LAYERS[subpackage], f"{subpackage}/{path.name} imports {module}"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_tensorflow_and_mlflow_load_at_the_top_only_where_they_are_the_point(path: Path) -> None:
    """Commands import them inside functions, after params are checked; ``--help`` never pays for them."""
    where = path.parent.name if path.parent != PACKAGE else None
    for heavy in top_level_imports(path) & set(HEAVY):
        assert where in HEAVY[heavy], f"{path.relative_to(PACKAGE)} imports {heavy} at module level"


@pytest.mark.parametrize("command", sorted(COMMANDS - {"__init__", "__main__"}))
def test_commands_load_the_model_and_tracking_packages_only_inside_functions(command: str) -> None:
    """So ``--help`` and a bad param answer at once, without TensorFlow (pipeline.model) or MLflow."""
    path = PACKAGE / f"{command}.py"
    top = {module for module in pipeline_imports(path, top_level_only=True)}
    assert not {module for module in top if module.startswith(("pipeline.model", "pipeline.tracking"))}
