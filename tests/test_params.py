"""params.yaml validation: every bad value is a ParamsError naming its dotted key and what is allowed."""

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pydantic
import pytest
from helpers import REPO_ROOT

from pipeline.core.param_sections import DatasetName
from pipeline.core.params import STAGE_PARAMS, Params, ParamsError, load_params
from pipeline.data.datasets import DATASETS

# case -> (params.yaml text, the dotted key the error names, what the error says is allowed, as a regex)
BAD_PARAMS = {
    "unknown-dataset": ("data:\n  dataset: cifar\n", "data.dataset", "'mnist' or 'fashion_mnist'"),
    "val-fraction-one": ("data:\n  val_fraction: 1.0\n", "data.val_fraction", "less than 1"),
    "val-fraction-negative": ("data:\n  val_fraction: -0.1\n", "data.val_fraction", "greater than or equal to 0"),
    "mirrors-a-string": ("data:\n  mirrors: a string\n", "data.mirrors", "valid tuple"),
    "latent-dim-zero": ("model:\n  latent_dim: 0\n", "model.latent_dim", "greater than or equal to 1"),
    "latent-dim-fraction": ("model:\n  latent_dim: 2.5\n", "model.latent_dim", "valid integer"),
    "conditional-a-number": ("model:\n  conditional: 1\n", "model.conditional", "valid boolean"),
    "conditional-a-string": ("model:\n  conditional: 'yes'\n", "model.conditional", "valid boolean"),
    "epochs-negative": ("train:\n  epochs: -1\n", "train.epochs", "greater than or equal to 1"),
    "epochs-quoted": ("train:\n  epochs: '5'\n", "train.epochs", "valid integer"),
    "epochs-boolean": ("train:\n  epochs: true\n", "train.epochs", "valid integer"),
    "batch-size-zero": ("train:\n  batch_size: 0\n", "train.batch_size", "greater than or equal to 1"),
    "unknown-optimizer": ("train:\n  optimizer: adamw\n", "train.optimizer", "'rmsprop', 'adam' or 'sgd'"),
    "learning-rate-zero": ("train:\n  learning_rate: 0\n", "train.learning_rate", "greater than 0"),
    "learning-rate-nan": ("train:\n  learning_rate: .nan\n", "train.learning_rate", "greater than 0|finite"),
    # A string in a number field stays an error, however numeric it looks once quoted.
    "learning-rate-quoted-exponent": ("train:\n  learning_rate: '1e-3'\n", "train.learning_rate", "valid number"),
    "learning-rate-word": ("train:\n  learning_rate: fast\n", "train.learning_rate", "valid number"),
    "learning-rate-exponent-without-digits": ("train:\n  learning_rate: 1e-\n", "train.learning_rate", "valid number"),
    "learning-rate-two-dots": ("train:\n  learning_rate: 1.0.0\n", "train.learning_rate", "valid number"),
    "epochs-in-exponent-form": ("train:\n  epochs: 1e2\n", "train.epochs", "valid integer"),
    "beta-negative": ("train:\n  beta: -0.1\n", "train.beta", "greater than or equal to 0"),
    "backend-torch": ("train:\n  backend: torch\n", "train.backend", "'tensorflow' or 'jax'"),
    "backend-capitalised": ("train:\n  backend: JAX\n", "train.backend", "'tensorflow' or 'jax'"),
    "is-samples-zero": ("evaluate:\n  is_samples: 0\n", "evaluate.is_samples", "greater than or equal to 1"),
    "grid-size-one": ("report:\n  grid_size: 1\n", "report.grid_size", "greater than or equal to 2"),
    "grid-dims-three": ("report:\n  grid_dims: [0, 1, 2]\n", "report.grid_dims", "at most 2 items"),
    "grid-dims-beyond-latent": (
        "report:\n  grid_dims: [0, 5]\nmodel:\n  latent_dim: 2\n", "report.grid_dims",
        r"model\.latent_dim 2.*e\.g\. \[0, 1\]",
    ),
    "grid-dims-beyond-latent-three": (
        "report:\n  grid_dims: [3, 1]\nmodel:\n  latent_dim: 3\n", "report.grid_dims",
        r"model\.latent_dim 3.*below 3",
    ),
    "negative-tolerance": (
        "check:\n  tolerances:\n    x:\n      tolerance: -1\n", "check.tolerances.x.tolerance",
        "greater than or equal to 0",
    ),
    "registered-name-with-alias-sign": (
        "check:\n  registered_models:\n    decoder: vae@mnist\n", "check.registered_models.decoder",
        re.escape("^[A-Za-z0-9]"),
    ),
    "registered-name-empty": (
        "check:\n  registered_models:\n    encoder: ''\n", "check.registered_models.encoder", "should match",
    ),
    "registered-names-equal": (
        "check:\n  registered_models: {encoder: vae, decoder: vae}\n", "check.registered_models",
        "two different names",
    ),
    "empty-section": ("train:\n", "train", "valid dictionary"),
    "unknown-section": ("trainer:\n  epochs: 5\n", "trainer", "unknown key"),
    "typo-key": ("train:\n  epoch: 5\n", "train.epoch", "unknown key"),
    "grid-range-reversed": pytest.param(
        "report:\n  grid_range: [3, -3]\n", "report.grid_range", "low < high",
    ),
    "grid-dims-equal": pytest.param(
        "report:\n  grid_dims: [0, 0]\n", "report.grid_dims", "distinct",
    ),
    # Every seed fits NumPy's legacy seeding (keras.utils.set_random_seed): 0 .. 2**32 - 1.
    "data-seed-beyond-32-bits": ("data:\n  seed: 4294967296\n", "data.seed", "less than or equal to 4294967295"),
    "train-seed-beyond-32-bits": ("train:\n  seed: 4294967296\n", "train.seed", "less than or equal to 4294967295"),
    "classifier-epochs-zero": ("classifier:\n  epochs: 0\n", "classifier.epochs", "greater than or equal to 1"),
    "classifier-learning-rate-above-one": (
        "classifier:\n  learning_rate: 2.0\n", "classifier.learning_rate", "less than or equal to 1"),
    "sample-count-one": ("evaluate:\n  sample_count: 1\n", "evaluate.sample_count", "greater than or equal to 2"),
    "sample-count-beyond-test-set": (
        "evaluate:\n  sample_count: 10001\n", "evaluate.sample_count", "less than or equal to 10000"),
    "bootstrap-resamples-one": (
        "evaluate:\n  bootstrap_resamples: 1\n", "evaluate.bootstrap_resamples", "greater than or equal to 2"),
    "nearest-neighbors-zero": (
        "evaluate:\n  nearest_neighbors: 0\n", "evaluate.nearest_neighbors", "greater than or equal to 1"),
    "nearest-neighbors-as-many-as-samples": (
        "evaluate:\n  sample_count: 50\n  nearest_neighbors: 50\n", "evaluate.nearest_neighbors",
        r"sample_count 50.*<= 49"),
    "classifier-seed-beyond-32-bits": (
        "classifier:\n  seed: 4294967296\n", "classifier.seed", "less than or equal to 4294967295"),
    "evaluate-seed-beyond-32-bits": (
        "evaluate:\n  seed: 4294967296\n", "evaluate.seed", "less than or equal to 4294967295"),
    "report-seed-beyond-32-bits": ("report:\n  seed: 18446744073709551616\n", "report.seed", "less than or equal"),
    "train-seed-negative": ("train:\n  seed: -1\n", "train.seed", "greater than or equal to 0"),
    # Sizes beyond what this pipeline can run (the bounds are explained in pipeline/core/param_sections.py).
    "epochs-too-many": ("train:\n  epochs: 10001\n", "train.epochs", "less than or equal to 10000"),
    "batch-size-beyond-training-set": (
        "train:\n  batch_size: 60001\n", "train.batch_size", "less than or equal to 60000"),
    "intermediate-dim-too-wide": (
        "model:\n  intermediate_dim: 4097\n", "model.intermediate_dim", "less than or equal to 4096"),
    "latent-dim-wider-than-an-image": (
        "model:\n  latent_dim: 785\n", "model.latent_dim", "less than or equal to 784"),
    "elbo-samples-too-many": (
        "evaluate:\n  elbo_samples: 10001\n", "evaluate.elbo_samples", "less than or equal to 10000"),
    "is-samples-too-many": ("evaluate:\n  is_samples: 10001\n", "evaluate.is_samples", "less than or equal to 10000"),
    "evaluate-batch-beyond-test-set": (
        "evaluate:\n  batch_size: 10001\n", "evaluate.batch_size", "less than or equal to 10000"),
    "grid-size-too-large": ("report:\n  grid_size: 101\n", "report.grid_size", "less than or equal to 100"),
    "n-samples-too-many": ("report:\n  n_samples: 401\n", "report.n_samples", "less than or equal to 400"),
    "n-reconstructions-too-many": (
        "report:\n  n_reconstructions: 51\n", "report.n_reconstructions", "less than or equal to 50"),
    "grid-range-infinite": ("report:\n  grid_range: [-.inf, 3]\n", "report.grid_range.0", "finite"),
    # Valid one by one, not together: the error names every key involved and what would work.
    "evaluate-draws-too-many-together": (
        "evaluate:\n  batch_size: 10000\n  is_samples: 10000\n", "evaluate.batch_size",
        r"evaluate\.is_samples.*model\.latent_dim.*use evaluate\.batch_size <= 1677\b",
    ),
    "evaluate-draws-wide-latent": (
        "model:\n  latent_dim: 784\nevaluate:\n  is_samples: 10000\n", "evaluate.batch_size",
        r"model\.latent_dim 784.*use evaluate\.batch_size <= 4\b",
    ),
    "train-activations-too-many-together": (
        "model:\n  intermediate_dim: 4096\ntrain:\n  batch_size: 60000\n", "train.batch_size",
        r"model\.intermediate_dim 4096.*use train\.batch_size <= 32768\b",
    ),
    # The training knobs: each bound, and the settings that would be silently ignored or contradict each other.
    "rmsprop-rho-one": ("train:\n  rmsprop_rho: 1.0\n", "train.rmsprop_rho", "less than 1"),
    "rmsprop-momentum-one": ("train:\n  rmsprop_momentum: 1\n", "train.rmsprop_momentum", "less than 1"),
    "rmsprop-epsilon-zero": ("train:\n  rmsprop_epsilon: 0.0\n", "train.rmsprop_epsilon", "within 1e-30 and 1"),
    "adam-epsilon-huge": ("train:\n  optimizer: adam\n  adam_epsilon: 2.0\n", "train.adam_epsilon",
                          "within 1e-30 and 1"),
    "adam-beta-1-negative": ("train:\n  optimizer: adam\n  adam_beta_1: -0.1\n", "train.adam_beta_1",
                             "greater than or equal to 0"),
    "adam-beta-2-one": ("train:\n  optimizer: adam\n  adam_beta_2: 1.0\n", "train.adam_beta_2", "less than 1"),
    "unknown-schedule": ("train:\n  lr_schedule: linear\n", "train.lr_schedule",
                         "'constant', 'cosine' or 'exponential'"),
    "warmup-negative": ("train:\n  lr_warmup_epochs: -1\n", "train.lr_warmup_epochs", "greater than or equal to 0"),
    "final-fraction-above-one": ("train:\n  lr_schedule: cosine\n  lr_final_fraction: 1.5\n",
                                 "train.lr_final_fraction", "less than or equal to 1"),
    "beta-warmup-negative": ("train:\n  beta_warmup_epochs: -0.5\n", "train.beta_warmup_epochs",
                             "greater than or equal to 0"),
    "unknown-objective": ("train:\n  objective: vimco\n", "train.objective", "'elbo' or 'iwae'"),
    "z-samples-zero": ("train:\n  z_samples: 0\n", "train.z_samples", "greater than or equal to 1"),
    "z-samples-too-many": ("train:\n  z_samples: 1001\n", "train.z_samples", "less than or equal to 1000"),
    "z-samples-fraction": ("train:\n  z_samples: 1.5\n", "train.z_samples", "valid integer"),
    "adam-setting-under-rmsprop": ("train:\n  adam_beta_2: 0.99\n", "train.adam_beta_2",
                                   r"no effect with train\.optimizer rmsprop; set it back to 0\.999"),
    "rmsprop-setting-under-sgd": ("train:\n  optimizer: sgd\n  rmsprop_rho: 0.99\n", "train.rmsprop_rho",
                                  r"no effect with train\.optimizer sgd.*use train\.optimizer: rmsprop"),
    "decay-under-constant-schedule": ("train:\n  lr_final_fraction: 0.1\n", "train.lr_final_fraction",
                                      r"no effect with train\.lr_schedule constant"),
    "exponential-decay-to-zero": ("train:\n  lr_schedule: exponential\n", "train.lr_final_fraction",
                                  "never reached by an exponential decay"),
    "lr-warmup-longer-than-training": ("train:\n  epochs: 2\n  lr_warmup_epochs: 2.5\n", "train.lr_warmup_epochs",
                                       "use at most 2"),
    "beta-warmup-longer-than-training": ("train:\n  beta_warmup_epochs: 6\n", "train.beta_warmup_epochs",
                                         "use at most 5"),
    "iwae-with-a-kl-weight": ("train:\n  objective: iwae\n", "train.beta", "use train.beta: 1.0"),
    "iwae-with-beta-warmup": ("train:\n  objective: iwae\n  beta: 1.0\n  beta_warmup_epochs: 1\n",
                              "train.beta_warmup_epochs", "no KL term to warm up"),
    "train-draws-too-many-together": (
        "train:\n  batch_size: 1000\n  z_samples: 1000\n", "train.batch_size",
        r"train\.z_samples 1000.*use train\.batch_size <= 524\b",
    ),
    "learning-rate-infinite": pytest.param(
        "train:\n  learning_rate: .inf\n", "train.learning_rate", "finite",
    ),
    "beta-infinite": pytest.param(
        "train:\n  beta: .inf\n", "train.beta", "finite",
    ),
}


# YAML 1.2 floats that YAML 1.1 (PyYAML) reads as strings: no dot, no exponent sign, or a capital E.
YAML_12_FLOATS = ["1e-5", "1e-05", "1E5", "+1e3", ".5e-3", "-1e-3", "1.0e5", "-.5E+3", "2e+1", "7.e-1"]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("text", "key", "allowed"), BAD_PARAMS.values(), ids=BAD_PARAMS.keys())
def test_bad_value_is_a_params_error_naming_the_file_the_dotted_key_and_what_is_allowed(
    tmp_path: Path, text: str, key: str, allowed: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ParamsError) as raised:
        load_params(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: invalid params:\n")
    assert re.search(rf"^  {re.escape(key)}: |\s{re.escape(key)}\s", message, re.M), message
    assert re.search(allowed, message), message


@pytest.mark.parametrize("number", YAML_12_FLOATS)
def test_every_yaml_12_float_form_loads_as_a_number(tmp_path: Path, number: str) -> None:
    params = load_params(_write(tmp_path, f"report:\n  grid_range: [{number}, 1e9]\n"))
    assert params.report.grid_range == (float(number), 1e9)


def test_yaml_11_numbers_keep_their_meaning(tmp_path: Path) -> None:
    params = load_params(_write(tmp_path, "report:\n  grid_range: [-1.5e+1, 1_000.5]\ntrain:\n  epochs: 1_0\n"))
    assert params.report.grid_range == (-15.0, 1000.5)
    assert params.train.epochs == 10


def test_learning_rate_set_by_dvc_exp_run_loads_as_the_number(tmp_path: Path) -> None:
    """``dvc exp run -S train.learning_rate=1e-5`` rewrites params.yaml through this DVC function."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    path.write_text((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    apply_overrides(path, ["train.learning_rate=1e-5", "train.beta=2E-1", "report.grid_range=[-1e-1,2.5e+1]"])
    assert re.search(r"^  learning_rate: 1e-05$", path.read_text(encoding="utf-8"), re.M)
    params = load_params(path)
    assert (params.train.learning_rate, params.train.beta, params.report.grid_range) == (1e-5, 0.2, (-0.1, 25.0))


@pytest.mark.parametrize(
    ("text", "allowed"), [("train:\n  epoch: 5\n", "epochs"), ("trainer: {}\n", "evaluate")], ids=["key", "section"]
)
def test_unknown_key_error_lists_the_keys_allowed_there(tmp_path: Path, text: str, allowed: str) -> None:
    with pytest.raises(ParamsError) as raised:
        load_params(_write(tmp_path, text))
    assert allowed in str(raised.value)


@pytest.mark.parametrize(
    "text",
    [
        "model:\n  latent_dim: 2\nreport:\n  grid_dims: [0, 5]\n",
        "evaluate:\n  batch_size: 10000\n  is_samples: 10000\n",
        "model:\n  intermediate_dim: 4096\ntrain:\n  batch_size: 60000\n",
        "model:\n  latent_dim: 1\n  conditional: true\n",
    ],
    ids=["grid-dims", "evaluate-draws", "train-activations", "conditional-1d"],
)
def test_params_that_conflict_are_named_by_dotted_key_without_a_dump_of_every_param(tmp_path: Path, text: str) -> None:
    with pytest.raises(ParamsError) as raised:
        load_params(_write(tmp_path, text))
    lines = str(raised.value).splitlines()[1:]
    assert len(lines) == 1, lines
    assert "(top level)" not in lines[0] and "{" not in lines[0] and "got" not in lines[0], lines[0]


def test_every_conflict_is_reported_at_once(tmp_path: Path) -> None:
    text = "model:\n  latent_dim: 2\nreport:\n  grid_dims: [0, 5]\n"
    both = text + "evaluate:\n  batch_size: 10000\n  is_samples: 10000\n"
    with pytest.raises(ParamsError) as raised:
        load_params(_write(tmp_path, both))
    keys = [line.split(":")[0].strip() for line in str(raised.value).splitlines()[1:]]
    assert keys == ["report.grid_dims", "evaluate.batch_size"]


@pytest.mark.parametrize(
    "text",
    [
        "train:\n  seed: 4294967295\ndata:\n  seed: 4294967295\nevaluate:\n  seed: 4294967295\n",
        "train:\n  epochs: 10000\n  batch_size: 60000\nmodel:\n  intermediate_dim: 512\n",
        "model:\n  latent_dim: 784\n  intermediate_dim: 4096\nevaluate:\n  batch_size: 42\n",
        "evaluate:\n  batch_size: 1677\n  is_samples: 10000\n  elbo_samples: 10000\n",
        "model:\n  latent_dim: 1\n",  # report.grid_dims is not used by a 1-D latent space
        "model:\n  latent_dim: 1\nreport:\n  grid_dims: [0, 7]\n",
        "report:\n  grid_size: 100\n  n_samples: 400\n  n_reconstructions: 50\n",
        "train:\n  optimizer: adam\n  adam_beta_1: 0.0\n  adam_beta_2: 0.9999\n  adam_epsilon: 1.0\n",
        "train:\n  rmsprop_rho: 0.0\n  rmsprop_momentum: 0.99\n  rmsprop_epsilon: 1e-30\n",
        "train:\n  lr_schedule: cosine\n  lr_final_fraction: 1.0\n  lr_warmup_epochs: 5\n  beta_warmup_epochs: 5\n",
        "train:\n  objective: iwae\n  beta: 1\n  z_samples: 1000\n  batch_size: 524\n",
    ],
    ids=["largest-seeds", "largest-training", "widest-model", "most-draws", "latent-1-default-grid",
         "latent-1-any-grid", "largest-report", "adam-settings", "rmsprop-settings", "longest-warmups",
         "most-training-draws"],
)
def test_values_at_the_bounds_are_accepted(tmp_path: Path, text: str) -> None:
    load_params(_write(tmp_path, text))


def test_duplicate_key_is_a_params_error(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="(?i)duplicate.*epochs|epochs.*duplicate"):
        load_params(_write(tmp_path, "train:\n  epochs: 3\n  epochs: 7\n"))


def test_every_bad_key_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = _write(tmp_path, "train:\n  epochs: 0\n  optimizer: adamw\nmodel:\n  latent_dim: -1\n")
    with pytest.raises(ParamsError) as raised:
        load_params(path)
    keys = sorted(line.split(":")[0].strip() for line in str(raised.value).splitlines()[1:])
    assert keys == ["model.latent_dim", "train.epochs", "train.optimizer"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("train: [\n", ": not valid YAML: line 2, column 1: "),
        ("train:\n  epochs: 5\n bad indent: 1\n", ": not valid YAML: line 3, column "),
        ("- data\n- train\n", "params must be a mapping of sections, got list"),
        ("just a string\n", "params must be a mapping of sections, got str"),
    ],
    ids=["unclosed-bracket", "bad-indent", "a-list", "a-string"],
)
def test_unparseable_file_is_a_params_error_naming_the_file(tmp_path: Path, text: str, reason: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ParamsError) as raised:
        load_params(path)
    assert str(raised.value).startswith(str(path))
    assert reason in str(raised.value)
    assert len(str(raised.value).splitlines()) == 1, str(raised.value)


def test_missing_file_is_a_params_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match=f"cannot read {tmp_path / 'absent.yaml'}: No such file"):
        load_params(tmp_path / "absent.yaml")


@pytest.mark.parametrize("text", ["", "# every knob left at its default\n", "{}\n"])
def test_empty_file_gives_the_defaults(tmp_path: Path, text: str) -> None:
    assert load_params(_write(tmp_path, text)) == Params()


def test_params_are_immutable(tmp_path: Path) -> None:
    params = load_params(_write(tmp_path, "train:\n  epochs: 3\n"))
    with pytest.raises(pydantic.ValidationError):
        params.train.epochs = 4  # type: ignore[misc]
    assert params.train.epochs == 3


def test_flat_gives_every_param_by_dotted_key_in_json_form(tmp_path: Path) -> None:
    params = load_params(_write(tmp_path, (
        "data:\n  mirrors: [/a, /b]\nreport:\n  grid_range: [-2, 2]\n"
        "check:\n  tolerances:\n    test_neg_elbo: {tolerance: 0.5}\n"
    )))
    flat = params.flat()
    assert flat["train.epochs"] == 5
    assert flat["data.mirrors"] == ["/a", "/b"]
    assert flat["report.grid_range"] == [-2, 2]
    assert flat["check.tolerances.test_neg_elbo.tolerance"] == 0.5
    assert flat["check.tolerances.test_neg_elbo.higher_is_better"] is False
    assert all(not isinstance(value, dict) for value in flat.values())
    assert {key.split(".")[0] for key in flat} == {"data", "model", "train", "classifier", "evaluate", "report",
                                                   "check"}


def test_read_by_selects_whole_sections_and_single_keys() -> None:
    params = Params()
    evaluate = params.read_by("evaluate")
    assert set(evaluate) == {"data.dataset", "train.beta", "train.backend", *params.section("evaluate")}
    assert "check.tolerances.test_neg_elbo.tolerance" not in params.read_by(*STAGE_PARAMS)


def test_lineage_of_a_stage_holds_every_earlier_stage_param_and_no_later_one() -> None:
    lineage = Params().lineage("train")
    assert {"data.mirrors", "data.val_fraction", "data.seed", "model.latent_dim", "train.seed"} <= set(lineage)
    assert not any(key.startswith(("evaluate.", "report.", "check.")) for key in lineage)


def test_dataset_names_in_params_are_exactly_the_described_datasets() -> None:
    assert set(get_args(DatasetName)) == set(DATASETS)


def test_stage_cli_prints_one_error_block_naming_the_key_exits_1_and_never_imports_tensorflow(
    tmp_path: Path,
) -> None:
    """Through ``python -m pipeline train`` (the dispatcher), so ``__main__`` is covered too."""
    _write(tmp_path, "train:\n  epochs: 0\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "DVC_"))}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pipeline", "train", "--params", "params.yaml"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    imports = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    messages = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    modules = {line.rsplit("|", 1)[1].strip() for line in imports[1:]}
    assert done.returncode == 1
    assert done.stdout == ""
    assert messages == [
        "train: error: params.yaml: invalid params:",
        "  train.epochs: Input should be greater than or equal to 1 (got 0)",
    ]
    assert "pipeline.core.params" in modules
    assert not {name for name in modules if name.split(".")[0] in {"tensorflow", "keras", "jax", "torch"}}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["params.yaml"]


def test_seed_beyond_numpy_limit_fails_naming_the_key_before_tensorflow_loads(tmp_path: Path) -> None:
    """The reported case: ``train.seed: 4294967296`` used to pass, load TensorFlow, then die in ``np.random.seed``."""
    _write(tmp_path, "train:\n  seed: 4294967296\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "DVC_"))}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pipeline", "train", "--params", "params.yaml"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    messages = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    modules = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()[1:]
               if line.startswith("import time:")}
    assert done.returncode == 1
    assert messages == [
        "train: error: params.yaml: invalid params:",
        "  train.seed: Input should be less than or equal to 4294967295 (got 4294967296)",
    ]
    assert not {name for name in modules if name.split(".")[0] in {"tensorflow", "keras"}}
