"""The logged models load, predict and serve where this project's code cannot be imported.

A child Python gets a ``sitecustomize`` that makes ``import pipeline`` fail (the project is installed
editable, so it would otherwise import from anywhere) and runs from outside the repository; its
answers must equal the Keras parts' own outputs on the same inputs.
"""

import json
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import requires
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO_ROOT, pipeline_imports, synthetic_digits, top_level_imports
from served_models import (
    NON_FINITE_BODIES,
    TOLERANCE,
    child_environment,
    logged_in_store,
    post,
    post_text,
    request_with,
    served,
    strict_json,
)

LATENT_DIM = 2
INPUTS = {"decoder": ("z", LATENT_DIM), "encoder": ("images", 784), "vae": ("images", 784)}
"""Each logged model's input and its width."""


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


@pytest.mark.integration  # trains and logs a model (the module's fixture)
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


def test_each_model_requires_the_tensorflow_build_each_platform_gets_from_pyproject(trained: dict) -> None:
    """``tensorflow-cpu`` on Linux x86_64, ``tensorflow`` elsewhere, both at the version that trained."""
    import keras
    import mlflow.pyfunc
    import tensorflow as tf
    from packaging.requirements import Requirement

    from pipeline.tracking.logged_models import TENSORFLOW_BUILDS

    default = [Requirement(line) for line in requires("vae-pipeline") or [] if "extra ==" not in line]
    project = {requirement.name: requirement.marker for requirement in default}
    for name, model_id in trained["model_ids"].items():
        lines = Path(mlflow.pyfunc.get_model_dependencies(f"models:/{model_id}")).read_text().splitlines()
        pins = {Requirement(line).name: Requirement(line) for line in lines if line.strip()}
        assert str(pins["keras"].specifier) == f"=={keras.__version__}", name
        for build, marker in TENSORFLOW_BUILDS:
            assert str(pins[build].specifier) == f"=={tf.__version__}", name
            assert str(pins[build].marker) == str(project[build]) == str(Requirement(f"x; {marker}").marker), name


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


@pytest.fixture(scope="module")
def loaded(trained: dict) -> dict[str, object]:
    """Each logged model loaded with ``mlflow.pyfunc.load_model``, as the scoring server loads it."""
    import mlflow.pyfunc

    return {name: mlflow.pyfunc.load_model(f"models:/{model_id}") for name, model_id in trained["model_ids"].items()}


def score(model: object, body: str) -> tuple[int, dict]:
    """What ``mlflow models serve`` answers ``body`` with: the scoring server's own ``invocations``, and its
    exception handler's status and JSON body for an ``MlflowException``."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    try:
        answer = scoring_server.invocations(body.encode(), "application/json", model, model.metadata.get_input_schema())
    except MlflowException as error:
        return error.get_http_status_code(), strict_json(error.serialize_as_json())
    return answer.status, strict_json(answer.response)


@pytest.mark.integration  # trains and logs a model (the module's fixture)
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # MLflow reading 1e39 as float32
@pytest.mark.parametrize("value", list(NON_FINITE_BODIES))
@pytest.mark.parametrize("name", list(INPUTS))
def test_a_value_that_is_not_a_finite_float32_gets_400_naming_the_input_row_and_column(
        loaded: dict, name: str, value: str) -> None:
    """The reported case: NaN and null got HTTP 200 and a grey image or a fixed code; Infinity and 1e39 got 200
    with a bare NaN in the body."""
    input_name, width = INPUTS[name]
    status, answer = score(loaded[name], request_with(width, NON_FINITE_BODIES[value]))
    assert (status, answer["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), answer
    assert (f"input '{input_name}' holds 1 value(s) that are not finite numbers, first at row 1, column 1"
            in answer["message"])


@pytest.mark.integration  # trains and logs a model (the module's fixture)
@pytest.mark.parametrize("pixel", ["255", "1.0001", "-0.5", "3e38"])
@pytest.mark.parametrize("name", ["encoder", "vae"])
def test_a_pixel_outside_zero_to_one_gets_400_naming_it(loaded: dict, name: str, pixel: str) -> None:
    status, answer = score(loaded[name], request_with(784, pixel))
    assert status == 400, answer
    assert "input 'images' holds 1 value(s) outside [0, 1]" in answer["message"]
    assert "at row 1, column 1" in answer["message"]


@pytest.mark.integration  # trains and logs a model (the module's fixture)
@pytest.mark.parametrize("name", list(INPUTS))
def test_a_request_missing_a_value_or_a_row_gets_400(loaded: dict, name: str) -> None:
    _, width = INPUTS[name]
    full, short = ", ".join(["0.0"] * width), ", ".join(["0.0"] * (width - 1))
    ragged = f'{{"inputs": [[{full}], [{short}]]}}'
    for body in (ragged, '{"inputs": []}', '{"inputs": [[]]}', '{"inputs": null}'):
        status, answer = score(loaded[name], body)
        assert status == 400, (body[:40], answer)


@pytest.mark.integration  # trains and logs a model (the module's fixture)
@pytest.mark.parametrize("z", ["3e38", "-3e38", "1e30", "-1e30"])
def test_every_decoder_answer_to_a_finite_z_is_strict_json_pixels_or_a_400(loaded: dict, z: str) -> None:
    status, answer = score(loaded["decoder"], f'{{"inputs": [[{z}, {z}], [0.0, {z}]]}}')
    if status == 200:
        pixels = np.array(answer["predictions"])
        assert pixels.shape == (2, 784) and np.all((pixels >= 0) & (pixels <= 1))
    else:
        assert status == 400 and "is not finite" in answer["message"], answer


def test_an_answer_that_is_not_finite_is_refused_not_returned() -> None:
    import keras
    from mlflow.exceptions import MlflowException

    from pipeline.tracking.keras_pyfunc import KerasPyfunc

    inputs = keras.Input((2,), name="z")
    huge = keras.initializers.Constant(1e30)
    overflow = keras.Model([inputs], keras.layers.Dense(3, kernel_initializer=huge)(inputs))
    with pytest.raises(MlflowException, match="output 'output' is not finite at row 1, column 0") as raised:
        KerasPyfunc(overflow).predict(np.array([[0.0, 0.0], [1e30, 1e30]], np.float32))
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"


def test_the_loader_copied_into_each_model_needs_only_keras_numpy_and_mlflow() -> None:
    loader = REPO_ROOT / "pipeline" / "tracking" / "keras_pyfunc.py"
    assert pipeline_imports(loader) == set()
    assert top_level_imports(loader) <= {"os", "typing", "numpy", "mlflow"}  # standard library, and what serving has


@pytest.mark.integration  # trains and logs a model (the module's fixture)
def test_pyfunc_predict_in_python_refuses_non_finite_arrays_too(loaded: dict, trained: dict) -> None:
    from mlflow.exceptions import MlflowException

    z = np.array([[0.0, 0.0], [np.nan, 1.0]], np.float32)
    with pytest.raises(MlflowException, match="input 'z' holds 1 value.s. that are not finite numbers, first at row 1"):
        loaded["decoder"].predict(z)
    good = np.array([[0.0, 0.0], [1.0, 1.0]], np.float32)
    assert np.max(np.abs(loaded["decoder"].predict(good) - trained["decoder"].predict(good, verbose=0))) <= TOLERANCE


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


@pytest.mark.integration
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


@pytest.mark.clones
def test_served_models_answer_like_keras_and_refuse_non_finite_input_with_400_in_json(trained: dict,
                                                                                    tmp_path: Path) -> None:
    images = trained["images"][:2]
    z = np.array([[0.0, 0.0], [1.5, -0.5], [-2.0, 1.0]], dtype=np.float32)
    expected = _expected(trained, images, z)
    environment = child_environment(trained, tmp_path)
    answers, refusals = {}, {}
    for name in INPUTS:
        inputs = z if name == "decoder" else images
        with served(f"models:/{trained['model_ids'][name]}", environment, tmp_path) as port:
            answers[name] = post(port, {"inputs": inputs.tolist()})["predictions"]
            input_name, width = INPUTS[name]
            refusals[name] = {value: post_text(port, request_with(width, body))
                              for value, body in NON_FINITE_BODIES.items()}
    assert np.max(np.abs(np.array(answers["decoder"], dtype=np.float32) - expected["decoder"])) <= TOLERANCE
    assert np.max(np.abs(np.array(answers["vae"], dtype=np.float32) - expected["vae"])) <= TOLERANCE
    assert set(answers["encoder"]) == {"z_mean", "z_log_var"}
    for name in ("z_mean", "z_log_var"):
        assert np.max(np.abs(np.array(answers["encoder"][name], dtype=np.float32) - expected[name])) <= TOLERANCE
    for name, by_value in refusals.items():
        for value, (status, answer) in by_value.items():
            assert (status, answer["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), (name, value, answer)
            assert f"input '{INPUTS[name][0]}' holds 1 value(s) that are not finite numbers" in answer["message"]
    assert not (tmp_path / "blocked.txt").exists()
