"""The logged models load, predict and serve where this project's code cannot be imported.

A child Python gets a ``sitecustomize`` that makes ``import pipeline`` fail (the project is installed
editable, so it would otherwise import from anywhere) and runs from outside the repository; its
answers must equal the Keras parts' own outputs on the same inputs.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from helpers import synthetic_digits

TOLERANCE = 1e-5
LATENT_DIM = 2
SERVER_START_LIMIT_S = 240
SERVER_LIFETIME_S = 420
BLOCKER = '''
import importlib.abc, os, sys

class NoPipeline(importlib.abc.MetaPathFinder):
    """Refuse the project's package, and note each attempt where the test can see it."""
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "pipeline":
            with open(os.environ["BLOCKED_IMPORTS"], "a") as log:
                log.write(name + "\\n")
            raise ImportError(f"{name} is blocked: the model must load without the project's code")
        return None

sys.meta_path.insert(0, NoPipeline())
'''


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A tiny VAE (fit for a few steps on synthetic digits) and its three logged models in a SQLite store."""
    import keras
    import mlflow

    from pipeline.model.vae import build_vae
    from pipeline.tracking import logged_models
    from pipeline.tracking.runs import ensure_experiment

    root = tmp_path_factory.mktemp("logged")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    keras.utils.set_random_seed(0)
    vae = build_vae(LATENT_DIM, 16, seed=0)
    images, _ = synthetic_digits(64, seed=1)
    vae.compile(optimizer="adam", loss="binary_crossentropy")
    vae.fit(images, images, epochs=2, batch_size=32, verbose=0)
    encoder, decoder = vae.get_layer("encoder"), vae.get_layer("decoder")
    with mlflow.start_run(experiment_id=ensure_experiment("logged-models", root)) as run:
        mlflow.log_metrics({"loss": 1.5, "val_loss": 1.7}, step=2)
        model_ids = logged_models.log_vae_models(encoder, decoder, {"images": images[:3]}, step=2)
    yield {"uri": uri, "root": root, "run_id": run.info.run_id, "model_ids": model_ids,
           "encoder": encoder, "decoder": decoder, "images": images}
    mlflow.set_tracking_uri(previous)


def test_each_part_is_a_logged_model_of_the_run_with_tensor_signature_and_example(trained: dict) -> None:
    import mlflow
    from mlflow.models import Model

    assert set(trained["model_ids"]) == {"encoder", "decoder", "vae"}
    run = mlflow.get_run(trained["run_id"])
    assert {output.model_id for output in run.outputs.model_outputs} == set(trained["model_ids"].values())
    specs = {}
    for name, model_id in trained["model_ids"].items():
        logged = mlflow.get_logged_model(model_id)
        assert (logged.name, logged.source_run_id) == (name, trained["run_id"])
        assert {metric.key: metric.value for metric in logged.metrics} == {"loss": 1.5, "val_loss": 1.7}
        info = mlflow.models.get_model_info(f"models:/{model_id}")
        specs[name] = ([(s.name, s.type, s.shape) for s in info.signature.inputs.inputs],
                       [(s.name, s.type, s.shape) for s in info.signature.outputs.inputs])
        assert Model.load(f"models:/{model_id}").load_input_example() is not None
    f32 = np.dtype("float32")
    assert specs["decoder"] == ([("z", f32, (-1, LATENT_DIM))], [("pixels", f32, (-1, 784))])
    assert specs["encoder"] == ([("images", f32, (-1, 784))],
                                [("z_mean", f32, (-1, LATENT_DIM)), ("z_log_var", f32, (-1, LATENT_DIM))])
    assert specs["vae"] == ([("images", f32, (-1, 784))], [("pixels", f32, (-1, 784))])


def test_a_view_with_a_layer_from_outside_keras_is_refused() -> None:
    import keras

    from pipeline.model.serving import NotPortableError, portable_views
    from pipeline.model.vae import build_decoder, build_encoder

    class Doubling(keras.layers.Layer):
        def call(self, inputs: object) -> object:
            return inputs * 2.0

    encoder = build_encoder(LATENT_DIM, 8)
    hidden = keras.layers.Dense(LATENT_DIM, name="before")(encoder.get_layer("encoder_hidden").output)
    z_mean = Doubling(name="z_mean")(hidden)
    custom = keras.Model(encoder.input, [z_mean, encoder.get_layer("z_log_var").output])
    with pytest.raises(NotPortableError, match="Doubling"):
        portable_views(custom, build_decoder(LATENT_DIM, 8))


def _expected(trained: dict, images: np.ndarray, z: np.ndarray) -> dict[str, np.ndarray]:
    z_mean, z_log_var, _ = trained["encoder"].predict(images, verbose=0)
    return {"decoder": trained["decoder"].predict(z, verbose=0), "z_mean": z_mean, "z_log_var": z_log_var,
            "vae": trained["decoder"].predict(z_mean, verbose=0)}


def _child_environment(trained: dict, folder: Path) -> dict[str, str]:
    """A Python environment in which ``import pipeline`` fails and is recorded, the tool folder first on PATH."""
    (folder / "blocker").mkdir(exist_ok=True)
    (folder / "blocker" / "sitecustomize.py").write_text(textwrap.dedent(BLOCKER), encoding="utf-8")
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "KERAS_"))}
    environment.update(PYTHONPATH=str(folder / "blocker"), MLFLOW_TRACKING_URI=trained["uri"],
                       BLOCKED_IMPORTS=str(folder / "blocked.txt"), TF_CPP_MIN_LOG_LEVEL="2",
                       PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return environment


LOAD_SCRIPT = '''
import json, sys
import numpy as np
import mlflow.keras, mlflow.pyfunc

try:
    import pipeline
    sys.exit("import pipeline worked: the test would prove nothing")
except ImportError:
    pass
uris = json.loads(sys.argv[1])
inputs = np.load(sys.argv[2])
images, z = inputs["images"], inputs["z"]
encoded = mlflow.pyfunc.load_model(uris["encoder"]).predict(images)
answers = {
    "decoder": mlflow.pyfunc.load_model(uris["decoder"]).predict(z),
    "z_mean": encoded["z_mean"], "z_log_var": encoded["z_log_var"],
    "vae": mlflow.pyfunc.load_model(uris["vae"]).predict(images),
    "keras_vae": mlflow.keras.load_model(uris["vae"]).predict(images, verbose=0),
    "keras_decoder": mlflow.keras.load_model(uris["decoder"]).predict(z, verbose=0),
}
np.savez(sys.argv[3], **answers)
'''


@pytest.mark.slow
def test_pyfunc_and_keras_loading_need_no_project_code(trained: dict, tmp_path: Path) -> None:
    images = trained["images"][:7]
    z = np.linspace(-2, 2, 2 * 5, dtype=np.float32).reshape(5, 2)
    np.savez(tmp_path / "inputs.npz", images=images, z=z)
    uris = {name: f"models:/{model_id}" for name, model_id in trained["model_ids"].items()}
    (tmp_path / "load.py").write_text(LOAD_SCRIPT, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "load.py", json.dumps(uris), "inputs.npz", "answers.npz"], cwd=tmp_path,
        env=_child_environment(trained, tmp_path), capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answers, expected = np.load(tmp_path / "answers.npz"), _expected(trained, images, z)
    assert answers["decoder"].shape == (5, 784) and answers["z_mean"].shape == (7, LATENT_DIM)
    for name, reference in {**expected, "keras_vae": expected["vae"], "keras_decoder": expected["decoder"]}.items():
        assert np.max(np.abs(answers[name] - reference)) <= TOLERANCE, name
    assert (tmp_path / "blocked.txt").read_text(encoding="utf-8").split() == ["pipeline"]  # only the probe


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _post(port: int, body: dict) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


@contextmanager
def _served(uri: str, environment: dict[str, str], folder: Path) -> Iterator[int]:
    """``mlflow models serve`` on a free local port, ended (with its workers) when the caller is done."""
    port = _free_port()
    command = ["timeout", str(SERVER_LIFETIME_S), sys.executable, "-m", "mlflow", "models", "serve", "-m", uri,
               "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    log = open(folder / f"serve-{port}.log", "w")  # noqa: SIM115  (closed below, after the server ends)
    server = subprocess.Popen(command, cwd=folder, env=environment, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_START_LIMIT_S
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5):
                    break
            except (urllib.error.URLError, OSError):
                if server.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail(f"mlflow models serve did not start: {(folder / log.name).read_text()[-3000:]}")
                time.sleep(1)
        yield port
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)
        log.close()


@pytest.mark.slow
def test_served_decoder_and_encoder_answer_like_keras(trained: dict, tmp_path: Path) -> None:
    images = trained["images"][:2]
    z = np.array([[0.0, 0.0], [1.5, -0.5], [-2.0, 1.0]], dtype=np.float32)
    expected = _expected(trained, images, z)
    environment = _child_environment(trained, tmp_path)
    with _served(f"models:/{trained['model_ids']['decoder']}", environment, tmp_path) as port:
        generated = _post(port, {"inputs": z.tolist()})["predictions"]
    with _served(f"models:/{trained['model_ids']['encoder']}", environment, tmp_path) as port:
        encoded = _post(port, {"inputs": images.tolist()})["predictions"]
    assert np.max(np.abs(np.array(generated, dtype=np.float32) - expected["decoder"])) <= TOLERANCE
    assert set(encoded) == {"z_mean", "z_log_var"}
    for name in ("z_mean", "z_log_var"):
        assert np.max(np.abs(np.array(encoded[name], dtype=np.float32) - expected[name])) <= TOLERANCE
    assert not (tmp_path / "blocked.txt").exists()
