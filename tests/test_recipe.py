"""``python -m pipeline recipe``: recipes list, apply into params.yaml keeping every byte they do not change, and
a bad recipe is one line naming its file and key."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO_ROOT, git

from pipeline import recipe
from pipeline.core.param_sections import TrainParams
from pipeline.core.params import Params, load_params
from pipeline.core.strict_yaml import load_yaml

SHIPPED = REPO_ROOT / "recipes"
TRIAL = """\
# A test recipe: every kind of value, spelled as a person or DVC writes it.
train:
  optimizer: adam
  learning_rate: 3e-3
  adam_beta_2: 0.99
  adam_epsilon: 1.0e-08
  lr_schedule: cosine
  lr_warmup_epochs: 0.5
  beta: 1.0
  beta_warmup_epochs: 1
  z_samples: 4
  epochs: 50
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the shipped params.yaml beside a recipes folder holding ``notebook`` and the test recipe."""
    shutil.copyfile(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "recipes").mkdir()
    shutil.copyfile(SHIPPED / "notebook.yaml", tmp_path / "recipes" / "notebook.yaml")
    (tmp_path / "recipes" / "trial.yaml").write_text(TRIAL, encoding="utf-8")
    return tmp_path


def run(project: Path, *args: str) -> int:
    return recipe.main([*args, "--params", str(project / "params.yaml"), "--recipes", str(project / "recipes")])


def test_notebook_sets_every_recipe_param_to_its_default_and_params_yaml_ships_it() -> None:
    notebook = recipe.read_recipe(SHIPPED / "notebook.yaml")
    defaults = TrainParams().model_dump()
    assert list(notebook.values) == list(recipe.RECIPE_PARAMS)
    assert notebook.values == {key: defaults[key.removeprefix("train.")] for key in recipe.RECIPE_PARAMS}
    shipped = load_params(REPO_ROOT / "params.yaml").flat()
    assert all(shipped[key] == value for key, value in notebook.values.items())


@pytest.mark.parametrize("path", sorted(SHIPPED.glob("*.yaml")), ids=lambda path: path.stem)
def test_every_shipped_recipe_is_valid_and_undone_by_notebook(path: Path) -> None:
    shipped = recipe.read_recipe(path)
    assert set(shipped.values) <= set(recipe.read_recipe(SHIPPED / "notebook.yaml").values)
    assert shipped.origin


@pytest.mark.parametrize("name", ["tuned", "tuned-long"])
def test_a_shipped_tuned_recipe_fits_params_yaml_and_apply_notebook_undoes_it_byte_for_byte(
    tmp_path: Path, name: str
) -> None:
    shutil.copyfile(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    original = (tmp_path / "params.yaml").read_bytes()
    shipped = recipe.read_recipe(SHIPPED / f"{name}.yaml")
    options = ["--params", str(tmp_path / "params.yaml"), "--recipes", str(SHIPPED)]
    assert recipe.main(["apply", name, *options]) == 0
    applied = load_params(tmp_path / "params.yaml").flat()
    assert all(applied[key] == value for key, value in shipped.values.items())
    assert recipe.main(["apply", "notebook", *options]) == 0
    assert (tmp_path / "params.yaml").read_bytes() == original


def test_tuned_is_study_real_30s_best_trial_and_tuned_long_changes_only_what_its_comment_says() -> None:
    tuned = recipe.read_recipe(SHIPPED / "tuned.yaml").values
    long = recipe.read_recipe(SHIPPED / "tuned-long.yaml").values
    assert tuned == {"train.batch_size": 32, "train.optimizer": "adam", "train.learning_rate": 0.0063339,
                     "train.beta": 0.764425}  # trial 23 of study real-30 (MLflow run be1953be); 5 epochs as default
    assert {key: value for key, value in long.items() if tuned.get(key) != value} == {
        "train.epochs": 50, "train.lr_schedule": "cosine", "train.lr_final_fraction": 0.05}
    assert set(tuned) < set(long)


def test_recipe_list_shows_the_three_shipped_recipes(capsys: pytest.CaptureFixture[str]) -> None:
    assert recipe.main(["list", "--params", str(REPO_ROOT / "params.yaml"), "--recipes", str(SHIPPED)]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert rows == ["notebook", "tuned", "tuned-long"]


def test_apply_then_apply_notebook_gives_params_yaml_back_byte_for_byte(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = (project / "params.yaml").read_bytes()
    assert run(project, "apply", "trial") == 0
    applied = (project / "params.yaml").read_text(encoding="utf-8")
    train = load_params(project / "params.yaml").train
    assert (train.optimizer, train.learning_rate, train.adam_epsilon, train.epochs) == ("adam", 3e-3, 1e-8, 50)
    assert "  learning_rate: 3e-3\n" in applied, "a value keeps the recipe's spelling"
    assert "  optimizer: adam         # rmsprop | adam | sgd; only its own" in applied, "comments stay in their column"
    assert applied.count("\n") == original.decode().count("\n")
    assert run(project, "apply", "notebook") == 0
    assert (project / "params.yaml").read_bytes() == original
    out = capsys.readouterr().out
    assert "recipe: applied trial to" in out and "recipe: applied notebook to" in out


def test_apply_prints_each_changed_param_as_dvc_params_diff_does(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(project, "apply", "trial") == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header == f"recipe: applied trial to {project / 'params.yaml'}, 10 params changed"
    assert rows[0].split() == ["Path", "Param", "before", "trial"]
    cells = {row.split()[1]: row.split()[2:] for row in rows[1:]}
    assert cells["train.learning_rate"] == ["0.001", "0.003"]
    assert cells["train.optimizer"] == ["rmsprop", "adam"]
    assert cells["train.epochs"] == ["5", "50"]
    assert len(cells) == 10


def test_apply_leaves_params_that_are_not_in_the_recipe(project: Path) -> None:
    path = project / "params.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("  seed: 42\n  experiment", "  seed: 7\n  experiment"), encoding="utf-8")
    assert run(project, "apply", "trial") == 0
    params = load_params(path)
    assert params.train.seed == 7 and params.train.optimizer == "adam"
    assert params.model == Params().model and params.evaluate == Params().evaluate


def test_applying_what_params_yaml_already_holds_writes_nothing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (project / "params.yaml").stat().st_mtime_ns
    assert run(project, "apply", "notebook") == 0
    assert capsys.readouterr().out == f"recipe: {project / 'params.yaml'} already follows notebook\n"
    assert (project / "params.yaml").stat().st_mtime_ns == before


def test_a_params_yaml_without_the_new_keys_gets_them(project: Path) -> None:
    """An older params.yaml lacks the knobs' keys: a recipe adds those it sets, and the file stays valid."""
    path = project / "params.yaml"
    old = "".join(line for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
                  if not line.startswith(("  adam_", "  lr_")))
    path.write_text(old, encoding="utf-8")
    assert run(project, "apply", "trial") == 0
    assert load_params(path).train.lr_schedule == "cosine"


def test_list_shows_each_recipe_its_size_whether_params_yaml_follows_it_and_its_origin(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(project, "list") == 0
    header, notebook, trial = capsys.readouterr().out.splitlines()
    assert header.split() == ["Recipe", "Params", "In", "params.yaml", "From"]
    assert notebook.split()[:3] == ["notebook", str(len(recipe.RECIPE_PARAMS)), "yes"]
    assert trial.split()[:2] == ["trial", "10"] and trial.endswith("spelled as a person or DVC writes it.")


# case -> (recipe text, the dotted key or cause the one line names)
BAD_RECIPES = {
    "unknown-key": ("# x\ntrain:\n  learning_rat: 0.01\n", "train.learning_rat: unknown key"),
    "unknown-section": ("# x\ntrainer:\n  epochs: 5\n", "trainer: unknown key"),
    "out-of-bounds": ("# x\ntrain:\n  rmsprop_rho: 1.0\n", "train.rmsprop_rho: Input should be less than 1"),
    "wrong-type": ("# x\ntrain:\n  z_samples: many\n", "train.z_samples: Input should be a valid integer"),
    "conflict": ("# x\ntrain:\n  adam_beta_2: 0.99\n", "train.adam_beta_2: 0.99 has no effect with train.optimizer"),
    "not-a-recipe-param": ("# x\ntrain:\n  seed: 3\n", "train.seed: not a recipe param"),
    "another-section": ("# x\nevaluate:\n  is_samples: 5\n", "evaluate.is_samples: not a recipe param"),
    "a-list": ("# x\n- train\n", "a recipe is a mapping of params sections such as 'train:', got list"),
    "a-string": ("# x\njust words\n", "a recipe is a mapping of params sections such as 'train:', got str"),
    "empty": ("# x\n", "a recipe is a mapping of params sections such as 'train:', got nothing"),
    "empty-section": ("# x\ntrain: {}\n", "sets no params"),
    "invalid-yaml": ("# x\ntrain: [\n", "not valid YAML"),
    "duplicate-key": ("# x\ntrain:\n  beta: 1.0\n  beta: 0.5\n", "not valid YAML"),
    "no-origin": ("train:\n  beta: 1.0\n", "starts with no comment line saying where the recipe came from"),
}


@pytest.mark.parametrize(("text", "named"), BAD_RECIPES.values(), ids=BAD_RECIPES.keys())
def test_a_bad_recipe_is_one_line_naming_the_file_and_key_and_params_yaml_is_untouched(
    project: Path, capsys: pytest.CaptureFixture[str], text: str, named: str
) -> None:
    path = project / "recipes" / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    original = (project / "params.yaml").read_bytes()
    assert run(project, "apply", "bad") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith(f"recipe: error: {path}: "), captured.err
    assert named in captured.err
    assert (project / "params.yaml").read_bytes() == original
    assert run(project, "list") == 1, "list validates every recipe too"


def test_a_recipe_that_does_not_fit_the_other_params_changes_nothing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Valid on the defaults, but 60 000 images × 4 draws × model.intermediate_dim 4096 is too much for one step."""
    path = project / "params.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("intermediate_dim: 256", "intermediate_dim: 4096"),
                    encoding="utf-8")
    (project / "recipes" / "wide.yaml").write_text("# x\ntrain:\n  batch_size: 60000\n  z_samples: 4\n",
                                                   encoding="utf-8")
    original = path.read_bytes()
    assert run(project, "apply", "wide") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "wide.yaml does not fit" in err and "train.batch_size:" in err
    assert path.read_bytes() == original


def test_an_unknown_recipe_name_lists_those_there_are(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(project, "apply", "tunned") == 1
    assert capsys.readouterr().err == (f"recipe: error: no recipe 'tunned' in {project / 'recipes'} "
                                       "(there: notebook, trial)\n")


@pytest.mark.clones  # git and dvc in a project
def test_dvc_params_diff_sees_exactly_what_apply_printed(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The file ``apply`` writes is one DVC reads as the same values (YAML 1.2, as ``dvc exp run -S`` writes)."""
    git(project, "init", "-q")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=project, check=True, capture_output=True,
                   timeout=120)
    git(project, "add", "params.yaml")
    git(project, "commit", "-qm", "params")
    assert run(project, "apply", "trial") == 0
    printed = {row.split()[1]: row.split()[2:] for row in capsys.readouterr().out.splitlines()[2:]}
    done = subprocess.run([sys.executable, "-m", "dvc", "params", "diff"], cwd=project, capture_output=True,
                          text=True, check=True, timeout=120)
    seen = {row.split()[1]: row.split()[2:] for row in done.stdout.splitlines()[1:]}
    assert seen == printed


def test_the_command_is_listed_and_answers_without_tensorflow(project: Path) -> None:
    listed = subprocess.run([sys.executable, "-m", "pipeline", "--help"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=60)
    assert any(line.split()[:1] == ["recipe"] for line in listed.stdout.splitlines())
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pipeline", "recipe", "apply", "trial"],
        cwd=project, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    modules = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert not {name for name in modules if name.split(".")[0] in {"tensorflow", "keras", "mlflow"}}
    assert load_yaml((project / "params.yaml").read_text(encoding="utf-8"))["train"]["optimizer"] == "adam"
