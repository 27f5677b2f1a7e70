"""The train stage end to end: a small real training recorded in a real MLflow store, and how it fails."""

import contextlib
import csv
import io
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import yaml
from helpers import REPO_ROOT, synthetic_digits
from mlflow.tracking import MlflowClient

from pipeline.core.params import load_params
from pipeline.data.splits import save_split
from pipeline.train import main

LOSS_NAMES = ("loss", "reconstruction_loss", "kl_loss", "neg_elbo")
LOGGED_NAMES = (*LOSS_NAMES, *(f"val_{name}" for name in LOSS_NAMES))
SMALL_PARAMS: dict[str, Any] = {
    "data": {"dataset": "mnist"},
    "model": {"latent_dim": 2, "intermediate_dim": 32},
    "train": {"epochs": 2, "batch_size": 100, "optimizer": "rmsprop", "learning_rate": 0.001,
              "beta": 0.1, "seed": 7, "experiment": "vae-stage-test"},
}



def write_project(root: Path, **overrides: dict[str, Any]) -> None:
    """Prepared train/test splits (600/200, no val split) and a small params.yaml under ``root``."""
    prepared = root / "data" / "prepared"
    save_split(prepared, "train", *synthetic_digits(600, seed=1))
    save_split(prepared, "test", *synthetic_digits(200, seed=2))
    params = {section: {**values, **overrides.get(section, {})} for section, values in SMALL_PARAMS.items()}
    params |= {section: values for section, values in overrides.items() if section not in params}
    (root / "params.yaml").write_text(yaml.safe_dump(params))



def run_in(root: Path, store: Path, patch: pytest.MonkeyPatch) -> tuple[int, str]:
    """``python -m pipeline.train`` with its default paths, in process, from ``root`` with a copy of ``store``.

    Returns the exit code and what the stage printed on stderr.
    """
    shutil.copyfile(store, root / "mlflow.db")
    patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
    patch.chdir(root)
    patch.delenv("DVC_ROOT", raising=False)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(["--params", "params.yaml"])
    return code, stderr.getvalue()


@dataclass(frozen=True)
class Trained:
    root: Path
    code: int
    stderr: str
    uri: str

    def run(self) -> mlflow.entities.Run:
        run_id = yaml.safe_load((self.root / "models" / "run.json").read_text())["run_id"]
        return MlflowClient(tracking_uri=self.uri).get_run(run_id)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, empty_store: Path) -> Trained:
    """One training of 2 epochs on 600 images, run as a DVC experiment named ``exp-small``."""
    root = tmp_path_factory.mktemp("project")
    write_project(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DVC_EXP_NAME", "exp-small")
        code, stderr = run_in(root, empty_store, patch)
    return Trained(root, code, stderr, f"sqlite:///{root}/mlflow.db")


@pytest.fixture
def run_store(trained: Trained, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the global MLflow client at the trained run's store, for ``runs:/`` URIs."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained.uri)
    mlflow.set_tracking_uri(trained.uri)
    return trained.uri


def history_rows(root: Path) -> list[dict[str, str]]:
    with open(root / "reports" / "train_history.csv", newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.mark.integration
def test_train_exits_zero_and_writes_model_run_and_history(trained: Trained) -> None:
    assert trained.code == 0, trained.stderr
    assert "train: error" not in trained.stderr
    for output in ("models/vae.keras", "models/run.json", "reports/train_history.csv"):
        assert (trained.root / output).is_file(), output


@pytest.mark.integration
def test_saved_model_loads_in_safe_mode_and_reconstructs_images(trained: Trained) -> None:
    import keras

    import pipeline.model.vae  # noqa: F401  (registers the Sampling layer)

    vae = keras.models.load_model(trained.root / "models" / "vae.keras", safe_mode=True)
    images, _ = synthetic_digits(3, seed=3)
    pixels = np.asarray(vae.predict(images, verbose=0))
    assert pixels.shape == (3, 784)
    assert np.all((pixels >= 0) & (pixels <= 1))
    assert vae.get_layer("encoder").output[0].shape == (None, 2)


@pytest.mark.integration
def test_run_json_names_finished_run_with_all_params_and_tags(trained: Trained) -> None:
    run = trained.run()
    params = load_params(trained.root / "params.yaml")
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "exp-small"
    assert set(run.data.params) == set(params.lineage("train"))
    assert run.data.params["train.epochs"] == "2"
    assert run.data.params["model.intermediate_dim"] == "32"
    assert run.data.params["train.experiment"] == "vae-stage-test"
    tags = run.data.tags
    assert tags["dataset"] == "mnist"
    assert tags["validation_split"] == "test"
    assert tags["dvc.experiment"] == "exp-small"
    assert tags["pipeline.stage"] == "train"
    assert tags["mlflow.source.git.commit"] == "unknown"
    assert tags["git.dirty"] == "unknown"  # the test project is no git checkout
    assert MlflowClient(tracking_uri=trained.uri).get_experiment(run.info.experiment_id).name == "vae-stage-test"
    [dataset_input] = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "mnist"
    assert {tag.key: tag.value for tag in dataset_input.tags}["mlflow.data.context"] == "training"


KNOBS = {"optimizer": "adam", "learning_rate": 0.003, "adam_beta_2": 0.99, "lr_schedule": "cosine",
         "lr_warmup_epochs": 0.5, "lr_final_fraction": 0.1, "beta": 1.0, "beta_warmup_epochs": 1.0, "z_samples": 2}


@pytest.mark.integration
def test_every_training_knob_reaches_the_stage_and_its_mlflow_run(
    tmp_path: Path, empty_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_project(tmp_path, train=KNOBS)
    code, stderr = run_in(tmp_path, empty_store, monkeypatch)
    assert code == 0, stderr
    run_id = yaml.safe_load((tmp_path / "models" / "run.json").read_text())["run_id"]
    logged = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_run(run_id).data.params
    assert {key: logged[f"train.{key}"] for key in KNOBS} == {key: str(value) for key, value in KNOBS.items()}
    assert logged["train.objective"] == "elbo" and logged["train.rmsprop_rho"] == "0.9"


@pytest.mark.integration
def test_run_has_per_epoch_train_and_val_losses_matching_history_csv(trained: Trained) -> None:
    client = MlflowClient(tracking_uri=trained.uri)
    run_id = trained.run().info.run_id
    rows = history_rows(trained.root)
    for name in LOGGED_NAMES:
        history = sorted(client.get_metric_history(run_id, name), key=lambda metric: metric.step)
        assert [metric.step for metric in history] == [1, 2], name
        assert all(math.isfinite(metric.value) for metric in history), name
        assert [metric.value for metric in history] == pytest.approx([float(row[name]) for row in rows], abs=1e-5)
    neg_elbo = client.get_metric_history(run_id, "neg_elbo")
    assert neg_elbo[0].value > 0


@pytest.mark.integration
def test_train_history_csv_has_one_row_per_epoch(trained: Trained) -> None:
    rows = history_rows(trained.root)
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert set(LOGGED_NAMES) <= set(rows[0])
    for row in rows:
        loss, reconstruction, kl = (float(row[name]) for name in ("loss", "reconstruction_loss", "kl_loss"))
        assert loss == pytest.approx(reconstruction + 0.1 * kl, abs=1e-4)
        assert float(row["neg_elbo"]) == pytest.approx(reconstruction + kl, abs=1e-4)


@pytest.mark.integration
def test_run_logs_encoder_decoder_and_vae_as_logged_models_named_in_run_json(trained: Trained, run_store: str) -> None:
    import keras
    import mlflow.keras
    from mlflow.models import Model

    import pipeline.model.vae  # noqa: F401  (registers the Sampling layer for the saved file)

    run = trained.run()
    model_ids = yaml.safe_load((trained.root / "models" / "run.json").read_text())["models"]
    assert set(model_ids) == {"encoder", "decoder", "vae"}
    assert {output.model_id for output in run.outputs.model_outputs} == set(model_ids.values())
    for name, model_id in model_ids.items():
        logged = mlflow.get_logged_model(model_id)
        assert (logged.name, logged.source_run_id, logged.params["train.epochs"]) == (name, run.info.run_id, "2")
        final_epoch = {metric.key: metric.value for metric in logged.metrics if metric.step == 2}
        assert final_epoch["val_neg_elbo"] == run.data.metrics["val_neg_elbo"]

    saved = keras.models.load_model(trained.root / "models" / "vae.keras", safe_mode=True)
    logged_vae = mlflow.keras.load_model(f"models:/{model_ids['vae']}")
    for part, layers in {"encoder": ("encoder_hidden", "z_mean", "z_log_var"),
                         "decoder": ("decoder_hidden", "decoder_logits")}.items():
        for layer in layers:
            ours = logged_vae.get_layer(part).get_layer(layer).get_weights()
            for mine, theirs in zip(ours, saved.get_layer(part).get_layer(layer).get_weights(), strict=True):
                np.testing.assert_array_equal(mine, theirs)

    folder = mlflow.artifacts.download_artifacts(f"models:/{model_ids['encoder']}")
    example = Model.load(folder).load_input_example(folder)  # named by the signature's input
    np.testing.assert_array_equal(example["images"], synthetic_digits(600, seed=1)[0][:5])


@pytest.mark.integration
def test_diverging_training_fails_the_run_and_writes_no_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_store: Path
) -> None:
    write_project(tmp_path, train={"learning_rate": 1e6, "experiment": "vae-diverge"})

    code, stderr = run_in(tmp_path, empty_store, monkeypatch)

    assert code == 1
    errors = [line for line in stderr.splitlines() if line.startswith("train: error:")]
    assert len(errors) == 1, stderr
    assert "learning_rate" in errors[0]
    assert "Traceback" not in stderr
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("vae-diverge").experiment_id])
    assert [run.info.status for run in runs] == ["FAILED"]
    assert not (tmp_path / "models" / "vae.keras").exists()
    assert not (tmp_path / "models" / "run.json").exists()
    assert not (tmp_path / "reports" / "train_history.csv").exists()


@pytest.mark.integration
def test_a_string_param_dvc_writes_unquoted_trains_under_that_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_store: Path
) -> None:
    """The reported case: ``dvc exp run -S train.experiment=no`` writes ``experiment: no``, which the pipeline
    read as ``False`` (YAML 1.1); and ``seed: 010`` is 10 where DVC shows it, not 8."""
    from dvc.utils.hydra import apply_overrides

    write_project(tmp_path)
    params = tmp_path / "params.yaml"
    apply_overrides(params, ["train.experiment=no"])  # DVC's own writer, as `dvc exp run -S` calls it
    params.write_text(params.read_text().replace("seed: 7", "seed: 010"))
    assert "  experiment: no\n" in params.read_text()

    code, stderr = run_in(tmp_path, empty_store, monkeypatch)

    assert code == 0, stderr
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    [run] = client.search_runs([client.get_experiment_by_name("no").experiment_id])
    assert (run.data.params["train.experiment"], run.data.params["train.seed"]) == ("no", "10")


BAD_PARAMS = {
    "negative-epochs": ({"train": {"epochs": -1}}, "train.epochs"),
    "negative-beta": ({"train": {"beta": -0.5}}, "train.beta"),
    "unknown-optimizer": ({"train": {"optimizer": "adagrad"}}, "train.optimizer"),
    "zero-latent-dim": ({"model": {"latent_dim": 0}}, "model.latent_dim"),
    "rmsprop-rho-one": ({"train": {"rmsprop_rho": 1.0}}, "train.rmsprop_rho"),
    "adam-setting-under-rmsprop": ({"train": {"adam_beta_2": 0.99}}, "train.adam_beta_2"),
    "iwae-with-a-kl-weight": ({"train": {"objective": "iwae"}}, "train.beta"),
}


@pytest.fixture(scope="module")
def bad_param_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int, str]]:
    """``python -X importtime -m pipeline.train`` on each bad params file, all at once; (folder, code, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    started = {}
    for case, (overrides, _) in BAD_PARAMS.items():
        root = tmp_path_factory.mktemp(case)
        write_project(root, **overrides)
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{root}/mlflow.db"
        started[case] = root, subprocess.Popen(
            [sys.executable, "-X", "importtime", "-m", "pipeline.train", "--params", "params.yaml"],
            cwd=root, env=dict(env), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        )
    results = {}
    try:
        for case, (root, process) in started.items():
            _, stderr = process.communicate(timeout=180)
            results[case] = root, process.returncode, stderr
    finally:
        for _, process in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


def imported_modules(importtime_stderr: str) -> set[str]:
    """Module names from ``-X importtime`` lines: ``import time: self | cumulative | name``."""
    return {line.rsplit("|", 1)[1].strip() for line in importtime_stderr.splitlines()
            if line.startswith("import time:") and line.count("|") == 2}


@pytest.mark.integration
@pytest.mark.parametrize("case", BAD_PARAMS)
def test_bad_params_fail_naming_the_key_before_tensorflow_loads(
    bad_param_runs: dict[str, tuple[Path, int, str]], case: str
) -> None:
    root, code, stderr = bad_param_runs[case]
    messages = "\n".join(line for line in stderr.splitlines() if not line.startswith("import time:"))
    assert code == 1, messages
    assert "train: error:" in messages
    assert BAD_PARAMS[case][1] in messages
    modules = imported_modules(stderr)
    assert {"pipeline.core.params", "pydantic"} <= modules
    assert not any(name.split(".")[0] in {"tensorflow", "keras"} for name in modules)
    assert not (root / "models").exists()
    assert not (root / "mlflow.db").exists()
