"""What several test files share: the repository root, small synthetic digits, history without timings,
and the ``pipeline`` imports of a source file."""

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist"


def synthetic_digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ten binary prototypes with 5 % of pixels flipped: float32 rows (count, 784) in [0, 1] and uint8 labels."""
    rng = np.random.default_rng(seed)
    prototypes = np.random.default_rng(0).random((10, 784)) < 0.2
    labels = (np.arange(count) % 10).astype(np.uint8)
    flips = rng.random((count, 784)) < 0.05
    return (prototypes[labels] ^ flips).astype(np.float32), labels


def without_timing(history: Iterable[Mapping[str, float]]) -> list[dict[str, float]]:
    """Per-epoch logs less their wall-clock ``seconds``, which differ between otherwise identical runs."""
    return [{key: value for key, value in logs.items() if key != "seconds"} for logs in history]


def pipeline_imports(path: Path, top_level_only: bool = False) -> set[str]:
    """The ``pipeline`` modules a source file imports (at the top or, unless ``top_level_only``, inside
    functions), as dotted names.

    ``from pipeline.tracking import runs`` names the module ``pipeline.tracking.runs`` when that is a
    module, else the package ``pipeline.tracking``.
    """
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "pipeline"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pipeline":
            for alias in node.names:
                candidate = REPO_ROOT / Path(*node.module.split("."), alias.name)
                is_module = candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file()
                found.add(f"{node.module}.{alias.name}" if is_module else node.module)
    return found


def top_level_imports(path: Path) -> set[str]:
    """The top-level package names a source file imports at module level (not inside functions)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found
