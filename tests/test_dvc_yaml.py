"""dvc.yaml must name the code and the params each stage uses, or `dvc repro` misses a change."""

from pathlib import Path

import pytest
import yaml
from helpers import REPO_ROOT, pipeline_imports

from pipeline.core.params import STAGE_PARAMS

STAGES = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


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


PACKAGE_DATA = {"pipeline.reporting.explorer": "pipeline/reporting/templates"}
"""Files other than Python that a module reads at run time, by the module that reads them."""


def code_dependencies(stage: str) -> set[str]:
    """What ``stage`` runs: each module in the import closure of ``pipeline.<stage>``, as a file, and the
    package data those modules read."""
    closure = imported_closure(f"pipeline.{stage}")
    modules = {str(module_path(module).relative_to(REPO_ROOT)) for module in closure}
    return modules | {folder for module, folder in PACKAGE_DATA.items() if module in closure}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_stage_lists_exactly_the_modules_it_imports_as_files(stage: str) -> None:
    """A docstring edited in one module reruns only the stages that import it: no stage depends on a whole
    package (every stage listed ``pipeline/core``, so one edit there made all five stale)."""
    listed = [dep for dep in STAGES[stage]["deps"] if dep.startswith("pipeline")]
    assert len(listed) == len(set(listed)), f"{stage} lists a dependency twice"
    expected = code_dependencies(stage)
    assert set(listed) == expected, (f"{stage}: add {sorted(expected - set(listed))}, "
                                     f"remove {sorted(set(listed) - expected)}")
    for dep in set(listed) - set(PACKAGE_DATA.values()):
        assert (REPO_ROOT / dep).is_file(), f"{stage} lists {dep}, not a module file"


def test_every_file_of_the_package_that_is_not_python_is_package_data_of_a_module() -> None:
    data = [path for path in (REPO_ROOT / "pipeline").rglob("*")
            if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts]
    assert data, "the report's templates are package data"
    for path in data:
        assert any(REPO_ROOT / folder in path.parents for folder in PACKAGE_DATA.values()), path
    for module in PACKAGE_DATA:
        assert module_path(module).is_file()


def test_editing_one_module_changes_the_code_of_only_the_stages_that_import_it() -> None:
    readers = {stage for stage in STAGES if "pipeline/data/sources.py" in code_dependencies(stage)}
    assert readers == {"download"}
    readers = {stage for stage in STAGES if "pipeline/reporting/figures.py" in code_dependencies(stage)}
    assert readers == {"report"}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_params_in_dvc_yaml_are_the_ones_the_stage_reads(stage: str) -> None:
    assert tuple(STAGES[stage]["params"]) == STAGE_PARAMS[stage]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_runs_its_own_module(stage: str) -> None:
    assert STAGES[stage]["cmd"].startswith(f"python -m pipeline.{stage} ")


def test_bytecode_is_ignored_by_dvc() -> None:
    ignored = (REPO_ROOT / ".dvcignore").read_text(encoding="utf-8").splitlines()
    assert "__pycache__/" in ignored and "*.pyc" in ignored
