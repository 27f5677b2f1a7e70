"""A user's Keras configuration changes none of the pipeline's numbers, and a broken one is one line.

``keras.json`` (in ``$KERAS_HOME`` or ``~/.keras``) sets the float type, ε and the image layout of every process
that imports Keras; ``$KERAS_MAX_STEPS_PER_EPOCH`` cuts ``predict`` short. Each case runs train, the classifier,
evaluate (whose sample metrics score with that classifier) and the encoding of a saved model in a fresh process
with a real ``keras.json`` in a temporary ``KERAS_HOME``, and must give exactly what a process without one gives.
"""

import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import REPO_ROOT, synthetic_digits
from served_models import child_environment

from pipeline.data.splits import save_split

SMALL_PARAMS = {
    "model": {"latent_dim": 2, "intermediate_dim": 32},
    # 30 epochs of 6 steps: after 2 the encoder is further from the posterior than evaluate's ELBO-IS check allows
    "train": {"epochs": 30, "batch_size": 100, "seed": 7, "experiment": "keras-config-test"},
    "classifier": {"epochs": 1, "batch_size": 100},
    "evaluate": {"elbo_samples": 2, "is_samples": 4, "batch_size": 100, "sample_count": 200,
                 "bootstrap_resamples": 5},
}
STAGES = textwrap.dedent("""
    import json, sys
    import numpy as np
    from pipeline.train import main as train
    from pipeline.classifier import main as classifier
    from pipeline.evaluate import main as evaluate
    assert train(["--params", "params.yaml"]) == 0
    assert classifier(["--params", "params.yaml"]) == 0
    assert evaluate(["--params", "params.yaml"]) == 0
    from pipeline.model.trained_vae import load_trained_vae
    images = np.load("images.npy")
    z_mean = load_trained_vae("models/vae.keras").encode_mean(images)
    np.save("z_mean.npy", z_mean)
""")
CONFIGURATIONS = {
    "float64": ({"floatx": "float64"}, {}),
    "float16": ({"floatx": "float16"}, {}),
    "epsilon-channels-first-capped-steps": ({"epsilon": 0.1, "image_data_format": "channels_first"},
                                            {"KERAS_MAX_STEPS_PER_EPOCH": "1", "KERAS_MAX_EPOCHS": "1"}),
}
ENCODED_ROWS = 2500
"""More than two of ``predict``'s batches, so a cap on its steps would show."""


def keras_environment(keras_home: Path, config: dict | None, extra: dict[str, str]) -> dict[str, str]:
    keras_home.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (keras_home / "keras.json").write_text(json.dumps(config))
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("KERAS_", "MLFLOW_"))}
    return {**environment, "KERAS_HOME": str(keras_home), "PYTHONPATH": str(REPO_ROOT), "CI": "1", **extra}


def run_stages(template: Path, folder: Path, config: dict | None, extra: dict[str, str]) -> dict[str, object]:
    """Train, the classifier, evaluate and encode in a fresh process; the numbers each gave."""
    shutil.copytree(template, folder)
    environment = keras_environment(folder / "keras-home", config, extra)
    environment["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder}/mlflow.db"
    done = subprocess.run([sys.executable, "-c", STAGES], cwd=folder, env=environment, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    with open(folder / "reports" / "train_history.csv", newline="") as stream:
        history = [{key: value for key, value in row.items() if key != "seconds"} for row in csv.DictReader(stream)]
    return {"history": history, "metrics": json.loads((folder / "reports" / "metrics.json").read_text()),
            "z_mean": np.load(folder / "z_mean.npy")}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Prepared splits (600 train, 200 test), params.yaml and images to encode, shared by every case."""
    root = tmp_path_factory.mktemp("keras-config") / "template"
    save_split(root / "data" / "prepared", "train", *synthetic_digits(600, seed=1))
    save_split(root / "data" / "prepared", "test", *synthetic_digits(200, seed=2))
    (root / "params.yaml").write_text(yaml.safe_dump(SMALL_PARAMS))
    np.save(root / "images.npy", synthetic_digits(ENCODED_ROWS, seed=3)[0])
    return root


@pytest.fixture(scope="module")
def reference(template: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The numbers of a process whose ``KERAS_HOME`` holds no ``keras.json``."""
    return run_stages(template, tmp_path_factory.mktemp("reference") / "project", None, {})


@pytest.mark.integration
@pytest.mark.parametrize(("config", "extra"), CONFIGURATIONS.values(), ids=CONFIGURATIONS.keys())
def test_a_users_keras_configuration_changes_no_number(
        template: Path, reference: dict[str, object], tmp_path: Path, config: dict, extra: dict[str, str]) -> None:
    """The reported case: ``"floatx": "float64"`` or ``"float16"`` killed training with a 58-line ``TypeError``,
    and loading a saved model and encoding failed the same way."""
    numbers = run_stages(template, tmp_path / "project", config, extra)
    assert numbers["history"] == reference["history"]
    assert numbers["metrics"] == reference["metrics"]
    z_mean = numbers["z_mean"]
    assert z_mean.dtype == np.float32 and z_mean.shape == (ENCODED_ROWS, 2)
    np.testing.assert_array_equal(z_mean, reference["z_mean"])


SERVE = textwrap.dedent("""
    import json, sys
    import numpy as np
    import mlflow.pyfunc
    ids = json.load(open("models/run.json"))["models"]
    pixels = mlflow.pyfunc.load_model(f"models:/{ids['decoder']}").predict(np.zeros((3, 2), "float32"))
    codes = mlflow.pyfunc.load_model(f"models:/{ids['encoder']}").predict(np.load("images.npy")[:3])
    np.savez("served.npz", pixels=pixels, z_mean=codes["z_mean"])
""")


@pytest.mark.integration
def test_logged_models_answer_in_float32_where_keras_json_says_float16(
        template: Path, reference: dict[str, object], tmp_path: Path) -> None:
    """A serving process (without the project's code) under a ``float16`` keras.json gets the float32 answers
    of the models trained under a ``float64`` one."""
    trained = tmp_path / "trained"
    run_stages(template, trained, {"floatx": "float64"}, {})
    (tmp_path / "serving-keras-home").mkdir()
    (tmp_path / "serving-keras-home" / "keras.json").write_text('{"floatx": "float16"}')
    environment = child_environment({"uri": f"sqlite:///{trained}/mlflow.db"}, tmp_path)
    environment["KERAS_HOME"] = str(tmp_path / "serving-keras-home")
    done = subprocess.run([sys.executable, "-c", SERVE], cwd=trained, env=environment, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert not (tmp_path / "blocked.txt").exists(), (tmp_path / "blocked.txt").read_text()
    with np.load(trained / "served.npz") as served:
        assert served["pixels"].dtype == np.float32 and served["pixels"].shape == (3, 784)
        np.testing.assert_allclose(served["z_mean"], reference["z_mean"][:3], rtol=1e-6)


@pytest.mark.integration
@pytest.mark.parametrize("config", [{"epsilon": 1}, {"floatx": "bfloat16"}, {"image_data_format": "sideways"}],
                         ids=["integer-epsilon", "bfloat16", "unknown-layout"])
def test_a_keras_json_that_keras_refuses_is_one_line_naming_it(
        template: Path, tmp_path: Path, config: dict) -> None:
    shutil.copytree(template, tmp_path / "project")
    environment = keras_environment(tmp_path / "keras-home", config, {})
    environment["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path}/mlflow.db"
    done = subprocess.run([sys.executable, "-m", "pipeline", "train", "--params", "params.yaml"],
                          cwd=tmp_path / "project", env=environment, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1
    assert done.stderr.startswith(f"train: error: Keras refuses its configuration file {tmp_path}/keras-home/"
                                  "keras.json") and done.stderr.count("\n") == 1, done.stderr[-3000:]
    assert not (tmp_path / "project" / "models").exists()
