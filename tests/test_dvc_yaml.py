"""dvc.yaml must name every module a stage runs, or `dvc repro` misses a code change."""

import ast
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]

PACKAGE = REPO_ROOT / "pipeline"


def _pipeline_imports(module: str) -> set[str]:
    """The ``pipeline`` modules that ``module`` imports, at the top or inside functions."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "pipeline":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("pipeline.")}
    return found


def _closure(module: str) -> set[str]:
    seen: set[str] = set()
    pending = [module]
    while pending:
        current = pending.pop()
        if current not in seen:
            seen.add(current)
            pending.extend(_pipeline_imports(current))
    return seen


STAGES = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_list_exactly_the_modules_it_imports(stage: str) -> None:
    listed = {Path(dep).stem for dep in STAGES[stage]["deps"] if dep.startswith("pipeline/")}
    assert listed == _closure(stage) - {"__init__"}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_runs_its_own_module(stage: str) -> None:
    assert STAGES[stage]["cmd"].startswith(f"python -m pipeline.{stage} ")
