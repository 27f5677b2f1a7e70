"""The notebook's VAE in Keras 3: encoder, sampling layer and decoder, optionally conditional.

With ``num_classes > 0`` the model is the conditional VAE of Sohn, Lee and Yan (2015): the encoder
sees the image and its one-hot label, q(z | x, y), and the decoder sees z and the label, p(x | z, y);
the prior stays N(0, I). The label input is called ``labels`` everywhere (encoder, decoder, VAE),
so a caller or a serving signature passes it by name. Only backend-neutral ``keras.ops`` are used
here; the losses live in ``pipeline.model.losses`` and the compiled training loop in
``pipeline.model.trainer`` (with ``tf_loop`` and ``jax_loop``). Importing this module imports Keras on its backend.
"""

from typing import Any

import keras
import numpy as np
from keras import layers, ops

from pipeline.core.errors import PipelineError
from pipeline.core.param_sections import IMAGE_PIXELS
from pipeline.model.tensors import Tensor

LABELS_INPUT = "labels"


class LabelError(PipelineError):
    """Labels are missing for a conditional model, given to an unconditional one, or out of range."""


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Class indices (n,) as float32 one-hot rows (n, num_classes); ``LabelError`` for an index out of range."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise LabelError(f"labels must be a 1-D array of class indices, got {labels.dtype} of shape {labels.shape}")
    outside = labels[(labels < 0) | (labels >= num_classes)]
    if outside.size:
        raise LabelError(f"label {int(outside[0])} is outside the model's {num_classes} classes "
                         f"(0 to {num_classes - 1})")
    return np.eye(num_classes, dtype=np.float32)[labels]


@keras.saving.register_keras_serializable(package="pipeline")
class Sampling(layers.Layer):
    """The reparameterization trick: z = z_mean + exp(z_log_var / 2) * eps, eps ~ N(0, I).

    The noise has the shape and float type of ``z_mean``, so any batch size works and no global float
    type (``keras.config.floatx``) enters, and comes from a seeded generator whose state is a layer
    variable: same seed, same draws.
    """

    def __init__(self, seed: int | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: tuple[Tensor, Tensor]) -> Tensor:
        z_mean, z_log_var = inputs
        epsilon = keras.random.normal(ops.shape(z_mean), dtype=z_mean.dtype, seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon

    def compute_output_shape(self, input_shape: tuple[tuple[int | None, ...], ...]) -> tuple[int | None, ...]:
        return input_shape[0]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "seed": self.seed}


def _with_labels(first: keras.KerasTensor, num_classes: int,
                 name: str) -> tuple[list[keras.KerasTensor], keras.KerasTensor]:
    """The model inputs and the tensor its hidden layer sees: ``first`` alone, or joined with one-hot labels."""
    if not num_classes:
        return [first], first
    labels = keras.Input(shape=(num_classes,), name=LABELS_INPUT)
    return [first, labels], layers.Concatenate(name=name)([first, labels])


def model_input(model_inputs: list[keras.KerasTensor]) -> keras.KerasTensor | list[keras.KerasTensor]:
    """One input as a bare tensor (the unconditional model's file stays as it was), several as a list."""
    return model_inputs[0] if len(model_inputs) == 1 else model_inputs


def build_encoder(latent_dim: int, intermediate_dim: int, seed: int | None = None,
                  num_classes: int = 0) -> keras.Model:
    """784 (+ num_classes one-hot ``labels``) → Dense relu → (z_mean, z_log_var, z)."""
    images = keras.Input(shape=(IMAGE_PIXELS,), name="images")
    model_inputs, joined = _with_labels(images, num_classes, "encoder_inputs")
    hidden = layers.Dense(intermediate_dim, activation="relu", name="encoder_hidden")(joined)
    z_mean = layers.Dense(latent_dim, name="z_mean")(hidden)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(hidden)
    z = Sampling(seed=seed, name="z")([z_mean, z_log_var])
    return keras.Model(model_input(model_inputs), [z_mean, z_log_var, z], name="encoder")


def build_decoder(latent_dim: int, intermediate_dim: int, num_classes: int = 0) -> keras.Model:
    """latent (+ num_classes one-hot ``labels``) → Dense relu → Dense 784 logits → sigmoid pixel probabilities."""
    z = keras.Input(shape=(latent_dim,), name="z")
    model_inputs, joined = _with_labels(z, num_classes, "decoder_inputs")
    hidden = layers.Dense(intermediate_dim, activation="relu", name="decoder_hidden")(joined)
    logits = layers.Dense(IMAGE_PIXELS, name="decoder_logits")(hidden)
    pixels = layers.Activation("sigmoid", name="pixels")(logits)
    return keras.Model(model_input(model_inputs), pixels, name="decoder")


def build_vae(latent_dim: int, intermediate_dim: int, seed: int | None = None, num_classes: int = 0) -> keras.Model:
    """The whole autoencoder, images (and labels) → reconstructed images, with ``encoder`` and ``decoder`` nested.

    ``num_classes`` 0 builds the unconditional VAE; more builds the conditional one, whose encoder,
    decoder and VAE take one-hot ``labels`` (n, num_classes) as a second input. ``seed`` seeds the
    sampling noise only; call ``keras.utils.set_random_seed`` first for reproducible initial weights
    (``VaeTrainer`` does). Later stages take the parts with ``vae.get_layer("encoder")`` and
    ``vae.get_layer("decoder")``.
    """
    encoder = build_encoder(latent_dim, intermediate_dim, seed, num_classes)
    decoder = build_decoder(latent_dim, intermediate_dim, num_classes)
    images = keras.Input(shape=(IMAGE_PIXELS,), name="images")
    if not num_classes:
        _, _, z = encoder(images)
        return keras.Model(images, decoder(z), name="vae")
    labels = keras.Input(shape=(num_classes,), name=LABELS_INPUT)
    _, _, z = encoder([images, labels])
    return keras.Model([images, labels], decoder([z, labels]), name="vae")


def decoder_logits(decoder: keras.Model) -> keras.Model:
    """A view of ``decoder`` that stops before the sigmoid, sharing its weights, for a stable BCE."""
    logits = decoder.get_layer("decoder_logits").output
    return keras.Model(decoder.input, logits, name="decoder_logits")
