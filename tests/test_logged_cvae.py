"""The conditional VAE's logged models take the label as a second named input: "a 7 from z" through
``mlflow models serve``, where this project's code cannot be imported."""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import synthetic_digits
from served_models import TOLERANCE, child_environment, logged_in_store, post, post_text, request_with, served

LATENT_DIM, CLASSES, SEVEN = 2, 10, 7


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A tiny conditional VAE and its three logged models in a SQLite store."""
    import keras

    from pipeline.model.trained_vae import TrainedVae
    from pipeline.model.vae import build_vae
    from pipeline.train import example_inputs

    keras.utils.set_random_seed(0)
    parts = TrainedVae(build_vae(LATENT_DIM, 16, seed=0, num_classes=CLASSES))
    images, labels = synthetic_digits(20, seed=1)
    with logged_in_store(tmp_path_factory.mktemp("logged-cvae"), "logged-cvae", parts.encoder, parts.decoder,
                         example_inputs(parts, images, labels), step=1) as logged:
        yield {**logged, "parts": parts, "images": images, "labels": labels}


@pytest.mark.integration  # compiles XLA programs, logs three models
def test_every_logged_part_takes_the_one_hot_label_by_name(trained: dict) -> None:
    import mlflow

    f32 = np.dtype("float32")
    specs = {name: [(s.name, s.type, s.shape) for s in
                    mlflow.models.get_model_info(f"models:/{model_id}").signature.inputs.inputs]
             for name, model_id in trained["model_ids"].items()}
    labels = ("labels", f32, (-1, CLASSES))
    assert specs == {"encoder": [("images", f32, (-1, 784)), labels], "decoder": [("z", f32, (-1, LATENT_DIM)), labels],
                     "vae": [("images", f32, (-1, 784)), labels]}


@pytest.mark.clones  # starts mlflow models serve
def test_served_conditional_decoder_draws_a_seven_from_z_like_keras(trained: dict, tmp_path: Path) -> None:
    z = np.array([[0.0, 0.0], [1.5, -0.5], [-2.0, 1.0]], dtype=np.float32)
    sevens = np.full(len(z), SEVEN)
    expected = trained["parts"].decode(z, sevens)
    other = trained["parts"].decode(z, np.full(len(z), 1))
    onehot = np.eye(CLASSES, dtype=np.float32)[sevens]
    with served(f"models:/{trained['model_ids']['decoder']}", child_environment(trained, tmp_path),
                 tmp_path) as port:
        generated = np.array(post(port, {"inputs": {"z": z.tolist(), "labels": onehot.tolist()}})["predictions"],
                             dtype=np.float32)
        z_text = str(z[:2].tolist())
        null_label = post_text(port, request_with(CLASSES, "null", name="labels", extra=f', "z": {z_text}'))
        no_label = post_text(port, f'{{"inputs": {{"z": {z_text}}}}}')
    assert generated.shape == (len(z), 784)
    assert np.max(np.abs(generated - expected)) <= TOLERANCE
    assert np.max(np.abs(generated - other)) > 100 * TOLERANCE, "the label must reach the served decoder"
    assert null_label[0] == 400 and "input 'labels' holds 1 value(s) that are not finite" in null_label[1]["message"]
    assert no_label[0] == 400 and "labels" in no_label[1]["message"], no_label
    assert not (tmp_path / "blocked.txt").exists()
