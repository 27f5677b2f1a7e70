"""dvc.yaml must name the code and the params each stage uses, or `dvc repro` misses a change."""

from pathlib import Path

import pytest
import yaml
from helpers import REPO_ROOT, pipeline_imports

from pipeline.core.params import STAGE_PARAMS

STAGES = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
MAX_CODE_DEPS = 8  # report: its module, the package init and six sub-packages


def module_path(module: str) -> Path:
    """``pipeline.core.params`` → ``pipeline/core/params.py`` (or the package's ``__init__.py``)."""
    path = REPO_ROOT / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def imported_closure(module: str) -> set[str]:
    """Every ``pipeline`` module that running ``module`` imports, directly or not, at the top or in functions.

    Importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` first, so packages count too.
    """
    seen: set[str] = set()
    pending = [module]
    while pending:
        current = pending.pop()
        if current not in seen:
            seen.add(current)
            parts = current.split(".")
            pending.extend(".".join(parts[:end]) for end in range(1, len(parts)))
            pending.extend(pipeline_imports(module_path(current)))
    return seen


def test_stages_are_the_ones_params_describes_in_pipeline_order() -> None:
    assert list(STAGES) == list(STAGE_PARAMS)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_module_a_stage_imports_lies_under_a_listed_dependency(stage: str) -> None:
    listed = [REPO_ROOT / dep for dep in STAGES[stage]["deps"] if dep.startswith("pipeline")]
    for module in imported_closure(f"pipeline.{stage}"):
        path = module_path(module)
        assert any(path == dep or dep in path.parents for dep in listed), f"{stage} imports {module}, not listed"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_stage_lists_only_code_it_imports_and_few_paths(stage: str) -> None:
    code = [REPO_ROOT / dep for dep in STAGES[stage]["deps"] if dep.startswith("pipeline")]
    used = {module_path(module) for module in imported_closure(f"pipeline.{stage}")}
    assert len(code) <= MAX_CODE_DEPS
    for dep in code:
        assert any(path == dep or dep in path.parents for path in used), f"{stage} lists {dep} but never imports it"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_params_in_dvc_yaml_are_the_ones_the_stage_reads(stage: str) -> None:
    assert tuple(STAGES[stage]["params"]) == STAGE_PARAMS[stage]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_runs_its_own_module(stage: str) -> None:
    assert STAGES[stage]["cmd"].startswith(f"python -m pipeline.{stage} ")


def test_bytecode_is_ignored_by_dvc() -> None:
    ignored = (REPO_ROOT / ".dvcignore").read_text(encoding="utf-8").splitlines()
    assert "__pycache__/" in ignored and "*.pyc" in ignored
