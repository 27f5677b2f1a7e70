"""The logged models load, predict and serve where this project's code cannot be imported.

A child Python gets a ``sitecustomize`` that makes ``import pipeline`` fail (the project is installed
editable, so it would otherwise import from anywhere) and runs from outside the repository; its
answers must equal the Keras parts' own outputs on the same inputs.
"""

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import TOLERANCE, child_environment, logged_in_store, post, served, synthetic_digits

LATENT_DIM = 2


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A tiny VAE (fit for a few steps on synthetic digits) and its three logged models in a SQLite store."""
    import keras

    from pipeline.model.vae import build_vae

    keras.utils.set_random_seed(0)
    vae = build_vae(LATENT_DIM, 16, seed=0)
    images, _ = synthetic_digits(64, seed=1)
    vae.compile(optimizer="adam", loss="binary_crossentropy")
    vae.fit(images, images, epochs=2, batch_size=32, verbose=0)
    encoder, decoder = vae.get_layer("encoder"), vae.get_layer("decoder")
    with logged_in_store(tmp_path_factory.mktemp("logged"), "logged-models", encoder, decoder, {"images": images[:3]},
                         step=2, metrics={"loss": 1.5, "val_loss": 1.7}) as logged:
        yield {**logged, "encoder": encoder, "decoder": decoder, "images": images}


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
        env=child_environment(trained, tmp_path), capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answers, expected = np.load(tmp_path / "answers.npz"), _expected(trained, images, z)
    assert answers["decoder"].shape == (5, 784) and answers["z_mean"].shape == (7, LATENT_DIM)
    for name, reference in {**expected, "keras_vae": expected["vae"], "keras_decoder": expected["decoder"]}.items():
        assert np.max(np.abs(answers[name] - reference)) <= TOLERANCE, name
    assert (tmp_path / "blocked.txt").read_text(encoding="utf-8").split() == ["pipeline"]  # only the probe


@pytest.mark.slow
def test_served_decoder_and_encoder_answer_like_keras(trained: dict, tmp_path: Path) -> None:
    images = trained["images"][:2]
    z = np.array([[0.0, 0.0], [1.5, -0.5], [-2.0, 1.0]], dtype=np.float32)
    expected = _expected(trained, images, z)
    environment = child_environment(trained, tmp_path)
    with served(f"models:/{trained['model_ids']['decoder']}", environment, tmp_path) as port:
        generated = post(port, {"inputs": z.tolist()})["predictions"]
    with served(f"models:/{trained['model_ids']['encoder']}", environment, tmp_path) as port:
        encoded = post(port, {"inputs": images.tolist()})["predictions"]
    assert np.max(np.abs(np.array(generated, dtype=np.float32) - expected["decoder"])) <= TOLERANCE
    assert set(encoded) == {"z_mean", "z_log_var"}
    for name in ("z_mean", "z_log_var"):
        assert np.max(np.abs(np.array(encoded[name], dtype=np.float32) - expected[name])) <= TOLERANCE
    assert not (tmp_path / "blocked.txt").exists()
