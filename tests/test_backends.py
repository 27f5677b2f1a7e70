"""TensorFlow and JAX: the param decides the backend, both give the same numbers from the same weights, and a
model trained on JAX is a plain ``.keras`` file that a TensorFlow process and MLflow load unchanged."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from backends import BACKENDS, needs_jax, on_backend
from helpers import REPO_ROOT, synthetic_digits
from test_train_stage import imported_modules, write_project

from pipeline.core.backend import BACKEND_ENV, BackendError, select_backend

STAGE_TIMEOUT_S = 300


# --- the rule: train.backend decides, KERAS_BACKEND may only agree ----------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("environ", [{}, {BACKEND_ENV: "same"}], ids=["unset", "agreeing"])
def test_the_param_sets_keras_backend_for_the_process_and_its_children(backend: str, environ: dict) -> None:
    """In a process that has not loaded Keras yet, as a stage is when it reads params."""
    environ = {key: backend for key in environ}
    code = (f"from pipeline.core.backend import select_backend; environ = {environ!r}; "
            f"select_backend({backend!r}, environ); print(environ)")
    answer = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == repr({BACKEND_ENV: backend})


@pytest.mark.integration  # a Python with Keras on each backend
def test_the_param_wins_over_the_backend_of_a_users_keras_json(tmp_path: Path) -> None:
    """Keras reads ``$KERAS_HOME/keras.json`` only when ``KERAS_BACKEND`` is unset, and the stage sets it."""
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "torch", "floatx": "float32"}))
    code = ("from pipeline.core.backend import select_backend; select_backend('tensorflow'); "
            "import keras; print(keras.backend.backend())")
    answer = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                            env=stage_env(KERAS_HOME=str(tmp_path)))
    assert answer.returncode == 0, answer.stderr[-2000:]
    assert answer.stdout.strip() == "tensorflow"


@pytest.mark.parametrize(("value", "param", "expected"), [
    ("torch", "tensorflow", "KERAS_BACKEND=torch in the environment: the pipeline runs on tensorflow or jax"),
    ("openvino", "jax", "KERAS_BACKEND=openvino in the environment: the pipeline runs on tensorflow or jax"),
    ("jax", "tensorflow", "KERAS_BACKEND=jax in the environment disagrees with train.backend: tensorflow; "
                          "the param decides (unset KERAS_BACKEND, or run with -S train.backend=jax)"),
    ("tensorflow", "jax", "KERAS_BACKEND=tensorflow in the environment disagrees with train.backend: jax"),
    ("x" * 5000, "tensorflow", "KERAS_BACKEND=" + "x" * 40 + "… (5000 characters) in the environment"),
    ("jax\nrm -rf /", "tensorflow", "KERAS_BACKEND=jax\\nrm -rf / in the environment: the pipeline runs on"),
])
def test_a_keras_backend_variable_that_is_unsupported_or_disagrees_is_refused_in_one_line(
        value: str, param: str, expected: str) -> None:
    environ = {BACKEND_ENV: value}
    with pytest.raises(BackendError) as raised:
        select_backend(param, environ)  # type: ignore[arg-type]
    message = str(raised.value)
    assert message.startswith(expected) and "\n" not in message and len(message) < 200, message
    assert environ == {BACKEND_ENV: value}, "nothing is changed on refusal"


def test_keras_already_loaded_on_another_backend_is_refused() -> None:
    import keras

    assert keras.backend.backend() == "tensorflow"
    with pytest.raises(BackendError, match="already loaded on tensorflow .* train.backend is jax"):
        select_backend("jax", {})


@pytest.mark.parametrize("missing", ["_epoch_totals", "_eval_batch"])
def test_a_backend_trainer_without_one_of_the_compiled_steps_cannot_be_made(missing: str) -> None:
    """Each backend compiles both steps; one left out fails at construction, naming it, not in the first epoch."""
    import numpy as np

    from pipeline.model.trainer import TrainConfig, VaeTrainer

    def step(*args: object) -> np.ndarray:
        return np.zeros(4)

    steps = {name: step for name in ("_epoch_totals", "_eval_batch") if name != missing}
    partial = type("PartialTrainer", (VaeTrainer,), steps)
    config = TrainConfig(latent_dim=2, intermediate_dim=4, epochs=1, batch_size=10, optimizer="sgd",
                         learning_rate=0.1, beta=1.0, seed=0)
    with pytest.raises(TypeError, match=f"abstract method.*{missing}"):
        partial(config)
    with pytest.raises(TypeError, match="abstract method"):
        VaeTrainer(config)  # type: ignore[abstract]  # the point: the base class has no steps of its own


def stage_env(**changes: str) -> dict[str, str]:
    """This environment without Keras' or DVC's variables, plus ``changes``."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("KERAS_", "DVC_", "MLFLOW_TRACKING_URI"))}
    return {**env, "PYTHONPATH": str(REPO_ROOT), **changes}


BLOCK_JAX = '''
import importlib.abc, sys

class NoJax(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "jax":
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, NoJax())
'''


@pytest.mark.integration
@pytest.mark.parametrize("stage", ["train", "evaluate", "report"])
@pytest.mark.parametrize("case", ["torch-in-the-environment", "jax-disagrees", "jax-not-installed"])
def test_every_keras_stage_refuses_a_backend_it_cannot_run_on_in_one_line_before_keras_loads(
        tmp_path: Path, stage: str, case: str) -> None:
    write_project(tmp_path, **({"train": {"backend": "jax"}} if case == "jax-not-installed" else {}))
    env = stage_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db")
    if case == "jax-not-installed":
        (tmp_path / "blocker").mkdir()
        (tmp_path / "blocker" / "sitecustomize.py").write_text(textwrap.dedent(BLOCK_JAX))
        env["PYTHONPATH"] = f"{tmp_path / 'blocker'}{os.pathsep}{REPO_ROOT}"
    else:
        env[BACKEND_ENV] = {"torch-in-the-environment": "torch", "jax-disagrees": "jax"}[case]
    answer = subprocess.run([sys.executable, "-X", "importtime", "-m", f"pipeline.{stage}", "--params", "params.yaml"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=STAGE_TIMEOUT_S)
    lines = [line for line in answer.stderr.splitlines() if not line.startswith("import time:")]
    expected = {"torch-in-the-environment": "KERAS_BACKEND=torch in the environment: the pipeline runs on",
                "jax-disagrees": "KERAS_BACKEND=jax in the environment disagrees with train.backend: tensorflow",
                "jax-not-installed": "train.backend: jax needs the jax package, which is not installed; "
                                     "install it with: uv sync --extra jax"}[case]
    assert answer.returncode == 1 and len(lines) == 1 and lines[0].startswith(f"{stage}: error: {expected}"), lines
    assert not {name.split(".")[0] for name in imported_modules(answer.stderr)} & {"keras", "tensorflow", "jax",
                                                                                   "mlflow"}
    assert not (tmp_path / "models").exists() and not (tmp_path / "mlflow.db").exists()


# --- the same numbers from the same weights ------------------------------------------------------------------

LATENT, HIDDEN = 2, 32


def shared_weights(shapes: list[tuple[int, ...]], seed: int) -> list[np.ndarray]:
    """Glorot-like float32 weights of ``shapes`` from NumPy, the same on every backend."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(shape) / np.sqrt(shape[0] if len(shape) > 1 else 10)).astype(np.float32)
            for shape in shapes]


def _vae_with_shared_weights(num_classes: int, quiet_sampling: bool) -> object:
    """A VAE whose weights come from NumPy; ``quiet_sampling`` makes σ = e^-15, so z is z_mean to float32."""
    from pipeline.model.vae import build_vae

    vae = build_vae(LATENT, HIDDEN, seed=0, num_classes=num_classes)
    vae.set_weights(shared_weights([tuple(weight.shape) for weight in vae.get_weights()], seed=11))
    if quiet_sampling:
        z_log_var = vae.get_layer("encoder").get_layer("z_log_var")
        kernel, bias = z_log_var.get_weights()
        z_log_var.set_weights([np.zeros_like(kernel), np.full_like(bias, -30.0)])
    return vae


def _terms_and_one_epoch(backend: str, num_classes: int, optimizer: str) -> tuple[dict, dict, list[np.ndarray]]:
    """Loss terms on a fixed batch, then one epoch (two full batches and a partial one) from the same weights."""
    from pipeline.model.trainer import TrainConfig, make_trainer

    images, labels = synthetic_digits(250, seed=12)
    labels = labels if num_classes else None
    config = TrainConfig(LATENT, HIDDEN, epochs=1, batch_size=100, optimizer=optimizer, learning_rate=0.01,
                         beta=0.5, seed=3, num_classes=num_classes, backend=backend)
    trainer = make_trainer(config, vae=_vae_with_shared_weights(num_classes, quiet_sampling=True))
    terms = trainer.evaluate(images, labels)
    (logs,) = trainer.fit(images, images[:50], train_labels=labels, val_labels=None if labels is None else labels[:50])
    return terms, logs, [np.asarray(weight) for weight in trainer.vae.get_weights()]


@pytest.mark.integration
@needs_jax
@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop"])
@pytest.mark.parametrize("num_classes", [0, 10], ids=["vae", "cvae"])
def test_loss_terms_and_a_training_epoch_agree_between_backends_given_the_same_weights_and_noise(
        num_classes: int, optimizer: str) -> None:
    """Same weights, sampling noise scaled to nothing: the loss terms agree to float32 precision, and so do the
    weights after three optimizer steps (gradients and updates through each backend's compiled loop)."""
    tf_terms, tf_logs, tf_weights = on_backend("tensorflow", _terms_and_one_epoch, "tensorflow", num_classes,
                                               optimizer)
    jax_terms, jax_logs, jax_weights = on_backend("jax", _terms_and_one_epoch, "jax", num_classes, optimizer)
    assert jax_terms == pytest.approx(tf_terms, rel=1e-5)
    assert {key: jax_logs[key] for key in tf_terms} == pytest.approx({key: tf_logs[key] for key in tf_terms},
                                                                      rel=1e-5)
    close = np.concatenate([np.isclose(mine, theirs, rtol=1e-4, atol=1e-5).ravel()  # a step is 0.01-0.03
                            for mine, theirs in zip(jax_weights, tf_weights, strict=True)])
    # RMSprop divides by the root of the running mean of squared gradients, so a gradient at rounding level
    # (a unit barely active) becomes a full step of either sign: a few weights in ten thousand may differ.
    assert close.all() if optimizer == "sgd" else close.mean() > 0.999, f"{np.sum(~close)} weights differ"
    assert not np.allclose(tf_weights[0], shared_weights([tf_weights[0].shape], seed=11)[0]), "the epoch trained"


def _likelihood(num_classes: int) -> dict[str, np.ndarray]:
    from pipeline.model.likelihood import LikelihoodEstimator
    from pipeline.model.trained_vae import TrainedVae

    images, labels = synthetic_digits(70, seed=13)
    estimator = LikelihoodEstimator(TrainedVae(_vae_with_shared_weights(num_classes, quiet_sampling=False)),
                                    max_rows=400)
    scores = estimator.score(images, elbo_samples=3, is_samples=20, batch_size=32, seed=4,
                             labels=labels if num_classes else None)
    return {name: getattr(scores, name) for name in ("z_mean", "reconstruction_loss", "kl_loss", "nll_is",
                                                     "squared_error")}


@pytest.mark.integration
@needs_jax
@pytest.mark.parametrize("num_classes", [0, 10], ids=["vae", "cvae"])
def test_the_importance_sampled_likelihood_agrees_between_backends_given_the_same_weights(num_classes: int) -> None:
    """The noise comes from NumPy, so evaluate's per-image terms depend on the weights only, not the backend."""
    on_tf, on_jax = (on_backend(backend, _likelihood, num_classes) for backend in ("tensorflow", "jax"))
    for name, values in on_tf.items():
        np.testing.assert_allclose(on_jax[name], values, rtol=1e-5, atol=1e-6, err_msg=name)


# --- a model trained on either backend is one kind of file ---------------------------------------------------


def _train_and_save(backend: str, num_classes: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Train briefly, save; the saved model's ``z_mean`` of a few images and its pixels at a few points."""
    from pipeline.model.trainer import TrainConfig, make_trainer

    images, labels = synthetic_digits(300, seed=14)
    labels = labels if num_classes else None
    config = TrainConfig(LATENT, HIDDEN, epochs=1, batch_size=64, optimizer="rmsprop", learning_rate=1e-3,
                         beta=0.1, seed=5, num_classes=num_classes, backend=backend)
    trainer = make_trainer(config)
    trainer.fit(images, images[:20], train_labels=labels, val_labels=None if labels is None else labels[:20])
    trainer.vae.save(path)
    z = np.linspace(-2, 2, 2 * 6, dtype=np.float32).reshape(6, 2)
    few = None if labels is None else labels[:6]
    return trainer.parts.encode_mean(images[:6], few), trainer.parts.decode(z, few)


@pytest.mark.integration
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("num_classes", [0, 10], ids=["vae", "cvae"])
def test_a_saved_model_from_either_backend_loads_in_a_tensorflow_process_and_answers_alike(
        backend: str, num_classes: int, tmp_path: Path) -> None:
    from pipeline.model.trained_vae import load_trained_vae

    z_mean, pixels = on_backend(backend, _train_and_save, backend, num_classes, tmp_path / "vae.keras")
    loaded = load_trained_vae(tmp_path / "vae.keras")
    images, labels = synthetic_digits(300, seed=14)
    few = labels[:6] if num_classes else None
    z = np.linspace(-2, 2, 2 * 6, dtype=np.float32).reshape(6, 2)
    assert loaded.num_classes == num_classes
    np.testing.assert_allclose(loaded.encode_mean(images[:6], few), z_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loaded.decode(z, few), pixels, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def jax_pipeline(tmp_path_factory: pytest.TempPathFactory, empty_store: Path) -> tuple[Path, dict[str, str]]:
    """train, evaluate and report with ``train.backend: jax``, each a fresh process; (root, stderr per stage).

    The classifier stage runs between train and evaluate like in dvc.yaml, on TensorFlow whatever the backend, so
    its output is not among the stages checked for a TensorFlow-free process."""
    root = tmp_path_factory.mktemp("jax-project")
    write_project(root, train={"backend": "jax", "experiment": "vae-jax-test"},
                  classifier={"epochs": 1, "batch_size": 100},
                  evaluate={"elbo_samples": 2, "is_samples": 8, "batch_size": 100, "seed": 0, "sample_count": 200,
                            "bootstrap_resamples": 5},
                  report={"grid_size": 4, "n_samples": 20, "n_reconstructions": 3})
    (root / "mlflow.db").write_bytes(empty_store.read_bytes())
    env = stage_env(MLFLOW_TRACKING_URI=f"sqlite:///{root}/mlflow.db")
    outputs = {}
    for stage in ("train", "classifier", "evaluate", "report"):
        answer = subprocess.run([sys.executable, "-X", "importtime", "-m", f"pipeline.{stage}", "--params",
                                 "params.yaml"], cwd=root, env=env, capture_output=True, text=True,
                                timeout=STAGE_TIMEOUT_S)
        assert answer.returncode == 0, answer.stderr[-3000:]
        if stage != "classifier":
            outputs[stage] = answer.stdout + answer.stderr
    return root, outputs


@pytest.mark.integration
@needs_jax
def test_stages_on_jax_train_evaluate_and_report_without_loading_tensorflow(
        jax_pipeline: tuple[Path, dict[str, str]]) -> None:
    root, outputs = jax_pipeline
    for stage, output in outputs.items():
        modules = {name.split(".")[0] for name in imported_modules(output)}
        assert "jax" in modules and "tensorflow" not in modules, stage
        said = [line for line in output.splitlines() if not line.startswith("import time:")]
        assert len(said) == 1 and said[0].startswith(f"{stage}: "), said
    metrics = json.loads((root / "reports" / "metrics.json").read_text())
    assert np.isfinite(list(metrics.values())).all() and metrics["test_nll_is"] <= metrics["test_neg_elbo"] + 0.5
    assert (root / "reports" / "explorer.html").is_file()


@pytest.mark.integration
@needs_jax
def test_a_jax_run_logs_its_backend_and_models_that_load_with_mlflow_in_a_tensorflow_process(
        jax_pipeline: tuple[Path, dict[str, str]]) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from pipeline.model.trained_vae import load_trained_vae

    root, _ = jax_pipeline
    uri = f"sqlite:///{root}/mlflow.db"
    reference = json.loads((root / "models" / "run.json").read_text())
    run = MlflowClient(tracking_uri=uri).get_run(reference["run_id"])
    assert run.data.params["train.backend"] == "jax"
    assert "test_neg_elbo" in run.data.metrics
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        decoder = mlflow.pyfunc.load_model(f"models:/{reference['models']['decoder']}")
        z = np.array([[0.0, 0.0], [1.5, -0.5]], np.float32)
        served = decoder.predict(z)
    finally:
        mlflow.set_tracking_uri(previous)
    np.testing.assert_allclose(served, load_trained_vae(root / "models" / "vae.keras").decode(z), rtol=1e-5,
                               atol=1e-6)
