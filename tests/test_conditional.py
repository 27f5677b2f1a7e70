"""The conditional VAE (Sohn et al. 2015, ``model.conditional: true``) on synthetic digits: its label input,
shapes, loss terms, training, scoring and the stages end to end."""

import dataclasses
import json
from pathlib import Path

import keras
import numpy as np
import pytest
from backends import BACKENDS, on_backend
from helpers import synthetic_digits, without_timing
from test_train_stage import run_in, write_project

from pipeline.core.errors import PipelineError
from pipeline.core.params import parse_params
from pipeline.model.likelihood import ELBO_STREAM, IS_STREAM, LikelihoodEstimator, latent_noise
from pipeline.model.trained_vae import TrainedVae, load_trained_vae
from pipeline.model.trainer import TrainConfig, make_trainer
from pipeline.model.vae import IMAGE_PIXELS, LabelError, build_vae, decoder_logits, one_hot

LATENT, HIDDEN, CLASSES = 2, 16, 10
CONFIG = TrainConfig(latent_dim=LATENT, intermediate_dim=32, epochs=1, batch_size=50, optimizer="rmsprop",
                     learning_rate=1e-3, beta=1.0, seed=0, num_classes=CLASSES)


@pytest.fixture(scope="module")
def cvae() -> keras.Model:
    keras.utils.set_random_seed(3)
    return build_vae(LATENT, HIDDEN, seed=3, num_classes=CLASSES)


def labels_of(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, CLASSES, count).astype(np.uint8)


def test_one_hot_gives_float_rows_and_refuses_labels_outside_the_classes() -> None:
    np.testing.assert_array_equal(one_hot(np.array([2, 0], np.uint8), 3), [[0, 0, 1], [1, 0, 0]])
    assert one_hot(np.array([1]), 3).dtype == np.float32
    for bad in ([3], [-1]):
        with pytest.raises(LabelError, match=rf"label {bad[0]} is outside the model's 3 classes \(0 to 2\)"):
            one_hot(np.array(bad), 3)
    with pytest.raises(LabelError, match="1-D array of class indices"):
        one_hot(np.array([0.5]), 3)


def test_config_takes_the_label_count_from_the_dataset_only_when_conditional() -> None:
    plain = TrainConfig.from_params(parse_params({}))
    conditional = TrainConfig.from_params(parse_params({"model": {"conditional": True}}))
    fashion = TrainConfig.from_params(parse_params({"model": {"conditional": True},
                                                    "data": {"dataset": "fashion_mnist"}}))
    assert (plain.num_classes, conditional.num_classes, fashion.num_classes) == (0, 10, 10)
    assert dataclasses.replace(conditional, num_classes=0) == plain


def test_unconditional_model_keeps_its_single_inputs_and_layer_names() -> None:
    vae = build_vae(LATENT, HIDDEN, seed=0)
    encoder, decoder = vae.get_layer("encoder"), vae.get_layer("decoder")
    assert [layer.name for layer in encoder.layers] == ["images", "encoder_hidden", "z_mean", "z_log_var", "z"]
    assert [layer.name for layer in decoder.layers] == ["z", "decoder_hidden", "decoder_logits", "pixels"]
    assert vae.input_shape == (None, IMAGE_PIXELS) and TrainedVae(vae).num_classes == 0


def test_conditional_encoder_and_decoder_take_one_hot_labels_by_name(cvae: keras.Model) -> None:
    encoder, decoder = cvae.get_layer("encoder"), cvae.get_layer("decoder")
    assert [tensor.name for tensor in cvae.inputs] == ["images", "labels"]
    assert [tensor.name for tensor in encoder.inputs] == ["images", "labels"]
    assert [tensor.name for tensor in decoder.inputs] == ["z", "labels"]
    assert encoder.input_shape == [(None, IMAGE_PIXELS), (None, CLASSES)]
    assert decoder.input_shape == [(None, LATENT), (None, CLASSES)]
    assert encoder.get_layer("encoder_hidden").kernel.shape == (IMAGE_PIXELS + CLASSES, HIDDEN)
    assert decoder.get_layer("decoder_hidden").kernel.shape == (LATENT + CLASSES, HIDDEN)
    for name in ("z_mean", "z_log_var", "z"):
        assert encoder.get_layer(name).name == name
    trained = TrainedVae(cvae)
    assert (trained.conditional, trained.num_classes, trained.latent_dim) == (True, CLASSES, LATENT)


@pytest.mark.parametrize("rows", [1, 7])
def test_encode_and_decode_give_per_row_shapes_and_depend_on_the_label(cvae: keras.Model, rows: int) -> None:
    trained = TrainedVae(cvae)
    images, _ = synthetic_digits(rows, seed=1)
    labels, other = labels_of(rows), (labels_of(rows) + 1) % CLASSES
    z_mean = trained.encode_mean(images, labels)
    pixels = trained.decode(z_mean, labels)
    assert z_mean.shape == (rows, LATENT) and pixels.shape == (rows, IMAGE_PIXELS)
    assert np.all((pixels >= 0) & (pixels <= 1))
    assert np.all(np.abs(trained.encode_mean(images, other) - z_mean).max(axis=1) > 0)
    assert np.all(np.abs(trained.decode(z_mean, other) - pixels).max(axis=1) > 0)
    logits = decoder_logits(trained.decoder)([z_mean, one_hot(labels, CLASSES)]).numpy()
    np.testing.assert_allclose(pixels, 1 / (1 + np.exp(-logits.astype(np.float64))), rtol=1e-5, atol=1e-6)


def test_missing_extra_miscounted_or_unknown_labels_are_label_errors(cvae: keras.Model) -> None:
    conditional, plain = TrainedVae(cvae), TrainedVae(build_vae(LATENT, HIDDEN, seed=0))
    images, labels = synthetic_digits(4, seed=2)
    with pytest.raises(LabelError, match="conditional VAE needs the label of each input"):
        conditional.encode_mean(images)
    with pytest.raises(LabelError, match="unconditional; it takes no labels"):
        plain.decode(np.zeros((4, LATENT), np.float32), labels)
    with pytest.raises(LabelError, match="3 labels for 4 inputs"):
        conditional.encode_mean(images, labels[:3])
    with pytest.raises(LabelError, match="label 10 is outside"):
        conditional.decode(np.zeros((4, LATENT), np.float32), np.full(4, 10))
    assert issubclass(LabelError, PipelineError)


def _label_errors(backend: str) -> list[str]:
    """The ``LabelError`` of each misuse, in order: no labels, labels for an unconditional config, a wrong model."""
    images, labels = synthetic_digits(20, seed=3)
    config = dataclasses.replace(CONFIG, backend=backend)
    misuses = [lambda: make_trainer(config).fit(images, images),
               lambda: make_trainer(dataclasses.replace(config, num_classes=0)).fit(images, images,
                                                                                    train_labels=labels),
               lambda: make_trainer(config, vae=build_vae(LATENT, 32, seed=0))]
    errors = []
    for misuse in misuses:
        try:
            misuse()
        except LabelError as error:
            errors.append(str(error))
    return errors


@pytest.mark.integration  # compiles a training loop on each backend
@pytest.mark.parametrize("backend", BACKENDS)
def test_trainer_refuses_missing_labels_and_a_model_of_another_label_count(backend: str) -> None:
    needs, unconditional, other_model = on_backend(backend, _label_errors, backend)
    assert "needs the label" in needs
    assert "takes no labels" in unconditional
    assert "the model takes 0 classes, the config 10" in other_model


def test_saved_conditional_vae_reloads_with_its_label_input_and_weights(cvae: keras.Model, tmp_path: Path) -> None:
    cvae.save(tmp_path / "cvae.keras")
    loaded, original = load_trained_vae(tmp_path / "cvae.keras"), TrainedVae(cvae)
    images, labels = synthetic_digits(5, seed=4)
    assert loaded.num_classes == CLASSES
    np.testing.assert_array_equal(loaded.encode_mean(images, labels), original.encode_mean(images, labels))
    z = np.random.default_rng(5).standard_normal((5, LATENT)).astype(np.float32)
    np.testing.assert_array_equal(loaded.decode(z, labels), original.decode(z, labels))


def numpy_conditional_terms(vae: keras.Model, x: np.ndarray, y: np.ndarray, noise: np.ndarray) -> dict:
    """−ELBO and importance-sampled −log p(x|y) in float64 NumPy, with [x, onehot(y)] and [z, onehot(y)] inputs."""
    encoder, decoder = vae.get_layer("encoder"), vae.get_layer("decoder")

    def dense(model: keras.Model, name: str, inputs: np.ndarray, relu: bool = False) -> np.ndarray:
        kernel, bias = (weight.astype(np.float64) for weight in model.get_layer(name).get_weights())
        out = inputs @ kernel + bias
        return np.maximum(out, 0.0) if relu else out

    onehot = np.eye(CLASSES)[y]
    hidden = dense(encoder, "encoder_hidden", np.concatenate([x, onehot], axis=1), relu=True)
    mean, log_var = dense(encoder, "z_mean", hidden), dense(encoder, "z_log_var", hidden)
    z = mean[:, None, :] + np.exp(0.5 * log_var)[:, None, :] * noise
    z_and_label = np.concatenate([z, np.broadcast_to(onehot[:, None, :], (*z.shape[:2], CLASSES))], axis=-1)
    logits = dense(decoder, "decoder_logits", dense(decoder, "decoder_hidden", z_and_label, relu=True))
    log_likelihood = np.sum(x[:, None, :] * logits - np.logaddexp(0.0, logits), axis=-1)
    log_weights = log_likelihood + np.sum(-0.5 * z**2 + 0.5 * noise**2 + 0.5 * log_var[:, None, :], axis=-1)
    peak = log_weights.max(axis=1)
    return {
        "kl": 0.5 * np.sum(np.exp(log_var) + mean**2 - 1.0 - log_var, axis=-1),
        "reconstruction": -log_likelihood.mean(axis=1),
        "nll_is": -(peak + np.log(np.mean(np.exp(log_weights - peak[:, None]), axis=1))),
    }


@pytest.mark.integration  # compiles XLA programs
def test_conditional_elbo_and_importance_sampling_match_numpy_given_the_labels(cvae: keras.Model) -> None:
    x, _ = synthetic_digits(6, seed=6)
    y = labels_of(6, seed=7)
    scores = LikelihoodEstimator(TrainedVae(cvae), max_rows=10).score(x, 3, 7, batch_size=4, seed=5, labels=y)
    elbo = numpy_conditional_terms(cvae, x, y, latent_noise(5, ELBO_STREAM, 0, 6, 3, LATENT))
    weighted = numpy_conditional_terms(cvae, x, y, latent_noise(5, IS_STREAM, 0, 6, 7, LATENT))
    np.testing.assert_allclose(scores.kl_loss, elbo["kl"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(scores.reconstruction_loss, elbo["reconstruction"], rtol=1e-4)
    np.testing.assert_allclose(scores.nll_is, weighted["nll_is"], rtol=1e-4)
    wrong = LikelihoodEstimator(TrainedVae(cvae)).score(x, 3, 7, 4, 5, labels=(y + 1) % CLASSES)
    assert not np.allclose(wrong.nll_is, scores.nll_is), "the label must change the likelihood"
    with pytest.raises(LabelError):
        LikelihoodEstimator(TrainedVae(cvae)).score(x, 3, 7, 4, 5)


def _true_and_shifted_labels(backend: str) -> tuple[list[dict], dict, dict]:
    images, labels = synthetic_digits(1000, seed=8)
    trainer = make_trainer(dataclasses.replace(CONFIG, epochs=4, beta=5.0, learning_rate=5e-3, backend=backend))
    history = trainer.fit(images[:900], images[900:], train_labels=labels[:900], val_labels=labels[900:])
    return (history, trainer.evaluate(images[900:], labels[900:]),
            trainer.evaluate(images[900:], (labels[900:] + 1) % CLASSES))


@pytest.mark.integration  # compiles XLA programs
@pytest.mark.parametrize("backend", BACKENDS)
def test_training_gathers_each_label_with_its_image_so_the_true_label_explains_it_best(backend: str) -> None:
    """Synthetic digits are their class prototype plus noise: given the right label, the decoder needs
    no latent code. With a heavy KL weight the code stays near the prior, so the label is the model's
    one cheap clue, and a trained model scores far better with the true labels than with shifted ones.
    Labels gathered in another order than their images would teach it nothing of the kind."""
    history, true, shifted = on_backend(backend, _true_and_shifted_labels, backend)
    assert len(history) == 4 and history[-1]["val_neg_elbo"] == pytest.approx(true["neg_elbo"], rel=0.05)
    assert true["neg_elbo"] < shifted["neg_elbo"] - 50, (true, shifted)
    for terms in (true, history[-1]):
        assert terms["neg_elbo"] == pytest.approx(terms["reconstruction_loss"] + terms["kl_loss"], rel=1e-6)


def _two_conditional_trainings(backend: str) -> list[list[dict]]:
    images, labels = synthetic_digits(200, seed=9)
    config = dataclasses.replace(CONFIG, backend=backend)
    return [without_timing(make_trainer(config).fit(images, images[:50], train_labels=labels,
                                                    val_labels=labels[:50])) for _ in range(2)]


@pytest.mark.integration  # compiles XLA programs
@pytest.mark.parametrize("backend", BACKENDS)
def test_conditional_training_repeats_itself_under_a_seed(backend: str) -> None:
    first, second = on_backend(backend, _two_conditional_trainings, backend)
    assert first == second


@pytest.mark.integration  # compiles XLA programs
def test_stages_train_evaluate_and_report_a_conditional_vae_and_say_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_store: Path) -> None:
    """``model.conditional: true`` end to end on synthetic digits: the run, the logged model's inputs, model.json."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from pipeline import classifier, evaluate, report

    # 30 epochs of 6 steps: an encoder trained for 2 is 17 nats from the posterior, which evaluate refuses
    write_project(tmp_path, model={"conditional": True}, train={"experiment": "cvae-stage-test", "epochs": 30},
                  classifier={"epochs": 1, "batch_size": 100},
                  evaluate={"elbo_samples": 2, "is_samples": 8, "batch_size": 100, "seed": 0, "sample_count": 200,
                            "bootstrap_resamples": 5},
                  report={"grid_size": 4, "n_samples": 20, "n_reconstructions": 3})
    code, stderr = run_in(tmp_path, empty_store, monkeypatch)
    assert code == 0, stderr
    assert classifier.main(["--params", "params.yaml"]) == 0
    assert evaluate.main(["--params", "params.yaml"]) == 0
    assert report.main(["--params", "params.yaml"]) == 0

    metrics = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert set(metrics) == {"test_loss", "test_reconstruction_loss", "test_kl_loss", "test_neg_elbo",
                            "test_nll_is", "test_mse", "active_units", "sample_fid", "sample_fid_low",
                            "sample_fid_high", "sample_precision", "sample_recall", "sample_coverage",
                            "sample_label_accuracy"}
    assert 0.0 <= metrics["sample_label_accuracy"] <= 1.0
    assert json.loads((tmp_path / "reports" / "model.json").read_text()) == {
        "kind": "cvae", "likelihood": "p(x|y)", "num_classes": 10}
    run_id = json.loads((tmp_path / "models" / "run.json").read_text())["run_id"]
    run = MlflowClient().get_run(run_id)
    assert run.data.params["model.conditional"] == "True" and run.data.tags["model.kind"] == "cvae"
    assert run.data.metrics["test_neg_elbo"] == pytest.approx(metrics["test_neg_elbo"])
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    models = json.loads((tmp_path / "models" / "run.json").read_text())["models"]
    inputs = {name: [(spec.name, spec.shape) for spec in
                     mlflow.models.get_model_info(f"models:/{model_id}").signature.inputs.inputs]
              for name, model_id in models.items()}
    assert inputs["encoder"] == [("images", (-1, 784)), ("labels", (-1, 10))]
    assert inputs["decoder"] == [("z", (-1, 2)), ("labels", (-1, 10))]
    assert load_trained_vae(tmp_path / "models" / "vae.keras").num_classes == 10
    assert (tmp_path / "reports" / "manifold.png").is_file() and (tmp_path / "reports" / "index.html").is_file()
