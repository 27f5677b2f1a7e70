"""``python -m pipeline recipe``: list the named training recipes, or write one into params.yaml.

A recipe is a small reviewed YAML file, ``recipes/<name>.yaml``, that starts with comment lines saying where
it came from and holds only the train params it changes, nested as in params.yaml. ``apply`` writes them
with ruamel.yaml's round trip, as ``dvc exp run -S`` does, so params.yaml keeps every comment and its layout,
and prints what changed as ``dvc params diff`` does. Each value keeps the spelling it has in the recipe, and
``notebook`` sets every param a recipe may set, spelled as params.yaml ships it: ``apply notebook`` after any
other recipe gives back the same bytes.
"""

import argparse
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from tabulate import tabulate

from pipeline.core import atomic_files
from pipeline.core.cli import run_stage, stage_parser
from pipeline.core.errors import PipelineError
from pipeline.core.param_sections import TrainParams
from pipeline.core.params import ParamsError, flatten, load_params, parse_params
from pipeline.core.paths import RECIPES_DIR
from pipeline.core.strict_yaml import YamlError, load_yaml

NOT_RECIPE_PARAMS = ("seed", "experiment", "backend")
"""Train params that name a run or where it runs rather than its recipe: a recipe is confirmed over several seeds,
and holds on either Keras backend."""
RECIPE_PARAMS = tuple(f"train.{key}" for key in TrainParams.model_fields if key not in NOT_RECIPE_PARAMS)
"""The dotted keys a recipe may set, in params.yaml's order."""


class RecipeError(PipelineError):
    """A recipe is missing, unreadable, or holds a value that params.yaml may not take."""


@dataclass(frozen=True)
class Recipe:
    """One validated recipe file."""

    name: str
    path: Path
    origin: str
    """Its first comment line: where the recipe came from."""
    values: dict[str, Any]
    """Dotted key → value, in the file's order."""


def recipe_paths(folder: Path) -> dict[str, Path]:
    """Every ``<name>.yaml`` in ``folder`` by name, sorted by name (``tuned`` before ``tuned-long``)."""
    return {path.stem: path for path in sorted(Path(folder).glob("*.yaml"), key=lambda path: path.stem)}


def read_recipe(path: Path) -> Recipe:
    """Read and validate one recipe; ``RecipeError`` in one line naming the file and each bad key."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise RecipeError(f"cannot read {path}: {error.strerror or error}") from None
    return parse_recipe(text, Path(path))


def parse_recipe(text: str, path: Path) -> Recipe:
    """Validate ``text`` as the recipe file ``path``; ``RecipeError`` in one line naming the file and the key."""
    try:
        raw = load_yaml(text)
    except YamlError as error:
        raise RecipeError(f"{path}: {error}") from None
    comments = [line.lstrip("# ").strip() for line in text.splitlines() if line.strip()]
    if not text.lstrip().startswith("#") or not comments[0]:
        raise RecipeError(f"{path}: starts with no comment line saying where the recipe came from")
    if not isinstance(raw, dict) or not raw:
        raise RecipeError(f"{path}: a recipe is a mapping of params sections such as 'train:', "
                          f"got {type(raw).__name__ if raw is not None else 'nothing'}")
    try:
        parse_params(raw)
    except ParamsError as error:
        raise RecipeError(f"{path}: {'; '.join(error.problems) or error}") from None
    values = {key: value for key, value in flatten(raw) if value != {}}
    if not values:
        raise RecipeError(f"{path}: sets no params")
    others = [key for key in values if key not in RECIPE_PARAMS]
    if others:
        raise RecipeError(f"{path}: {others[0]}: not a recipe param; a recipe sets only train params, "
                          f"not {', '.join(f'train.{key}' for key in NOT_RECIPE_PARAMS)}")
    return Recipe(Path(path).stem, Path(path), comments[0], values)


def find_recipe(folder: Path, name: str) -> Recipe:
    """The recipe ``name`` in ``folder``; ``RecipeError`` listing those there are when it is absent."""
    paths = recipe_paths(folder)
    if name not in paths:
        known = ", ".join(paths) or "none"
        raise RecipeError(f"no recipe {name!r} in {folder} (there: {known})")
    return read_recipe(paths[name])


def recipe_text(comments: Sequence[str], values: Mapping[str, Any]) -> str:
    """A recipe file: ``comments`` as its first lines, then ``values`` (dotted train keys) nested as in params.yaml."""
    stream = io.StringIO()
    round_trip_yaml().dump({"train": {key.removeprefix("train."): value for key, value in values.items()}}, stream)
    return "".join(f"# {line}\n" for line in comments) + stream.getvalue()


def write_recipe(path: Path, text: str, replace: bool = False) -> Recipe:
    """Write the recipe ``text`` to ``path`` once it validates; ``RecipeError`` when it does not, or when ``path``
    exists and ``replace`` is false (a shipped recipe is replaced on purpose only)."""
    if path.exists() and not replace:
        raise RecipeError(f"{path} exists; pass --force to replace it")
    recipe = parse_recipe(text, path)
    atomic_files.write_text(path, text)
    return recipe


def round_trip_yaml() -> YAML:
    """ruamel.yaml's round trip, as DVC edits params files: comments, order, quotes and long lines kept."""
    editor = YAML(typ="rt")
    editor.preserve_quotes = True
    editor.width = 4096
    return editor


def apply_recipe(recipe: Recipe, params_file: Path) -> list[tuple[str, Any, Any]]:
    """Write ``recipe`` into ``params_file`` and return ``(dotted key, before, after)`` for each value that changed.

    Only changed values are written, each spelled as in the recipe. The file is validated as it would be
    written, and replaced atomically, so a recipe that does not fit leaves it as it was.
    """
    load_params(params_file)  # an invalid params.yaml is reported as itself, not as the recipe's fault
    text = Path(params_file).read_text(encoding="utf-8")
    before = dict(flatten(load_yaml(text) or {}))
    changed = [(key, before.get(key), value) for key, value in recipe.values.items()
               if key not in before or before[key] != value or type(before[key]) is not type(value)]
    if not changed:
        return []
    editor = round_trip_yaml()
    document = editor.load(text)
    spelled = dict(flatten(editor.load(recipe.path.read_text(encoding="utf-8"))))
    for key, _, _ in changed:
        section, name = key.split(".")
        document.setdefault(section, {})[name] = spelled[key]
    stream = io.StringIO()
    editor.dump(document, stream)
    try:
        parse_params(load_yaml(stream.getvalue()))
    except ParamsError as error:
        raise RecipeError(f"{recipe.path} does not fit {params_file}: {'; '.join(error.problems)}") from None
    atomic_files.write_text(params_file, stream.getvalue())
    return changed


def _shown(value: Any) -> str:
    """A value as ``dvc params diff`` shows it: strings bare, numbers as JSON, an absent key as ``-``."""
    return "-" if value is None else value if isinstance(value, str) else json.dumps(value)


def changes_table(changes: list[tuple[str, Any, Any]], params_file: Path, name: str) -> str:
    """The changes in ``dvc params diff``'s plain layout: Path, Param, the old value, the recipe's."""
    rows = [[str(params_file), key, _shown(old), _shown(new)] for key, old, new in changes]
    return tabulate(rows, headers=["Path", "Param", "before", name], tablefmt="plain", disable_numparse=True)


def _list(args: argparse.Namespace) -> None:
    current = load_params(args.params).flat()
    recipes = [read_recipe(path) for path in recipe_paths(args.recipes).values()]
    follows = {recipe.name: all(current[key] == value for key, value in recipe.values.items()) for recipe in recipes}
    rows = [[recipe.name, len(recipe.values), "yes" if follows[recipe.name] else "", recipe.origin]
            for recipe in recipes]
    print(tabulate(rows, headers=["Recipe", "Params", "In params.yaml", "From"], tablefmt="plain")
          if rows else f"recipe: no recipes in {args.recipes}")


def _apply(args: argparse.Namespace) -> None:
    recipe = find_recipe(args.recipes, args.name)
    changes = apply_recipe(recipe, args.params)
    if not changes:
        print(f"recipe: {args.params} already follows {recipe.name}")
        return
    print(f"recipe: applied {recipe.name} to {args.params}, {len(changes)} params changed")
    print(changes_table(changes, args.params, recipe.name))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline recipe {list,apply NAME}``: parse ``argv``, run, return the exit code (0, 1, or 130)."""
    parser = stage_parser("recipe", "List the named training recipes, or write one into params.yaml.")
    parser.add_argument("--recipes", type=Path, default=RECIPES_DIR, help=f"recipe folder (default: {RECIPES_DIR})")
    after = argparse.ArgumentParser(add_help=False)  # the same options after the command, set only when given
    after.add_argument("--params", type=Path, default=argparse.SUPPRESS, help="params file")
    after.add_argument("--recipes", type=Path, default=argparse.SUPPRESS, help="recipe folder")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", parents=[after],
                                  help="each recipe, its size, whether params.yaml follows it, its origin")
    listing.set_defaults(run=_list)
    apply = commands.add_parser("apply", parents=[after],
                                help="write a recipe's params into params.yaml, keeping its comments")
    apply.add_argument("name", help="the recipe's file name without .yaml; 'notebook' restores the defaults")
    apply.set_defaults(run=_apply)
    return run_stage("recipe", lambda args: args.run(args), parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
