"""The notebook's VAE in Keras 3: encoder, sampling layer and decoder.

Only backend-neutral ``keras.ops`` are used here; the losses live in ``pipeline.model.losses``
and the compiled training loop in ``pipeline.model.trainer``. Importing this module imports
Keras (and so TensorFlow).
"""

import keras
from keras import layers, ops

IMAGE_PIXELS = 784


@keras.saving.register_keras_serializable(package="pipeline")
class Sampling(layers.Layer):
    """The reparameterization trick: z = z_mean + exp(z_log_var / 2) * eps, eps ~ N(0, I).

    The noise has the shape of ``z_mean``, so any batch size works, and comes from a seeded
    generator whose state is a layer variable: same seed, same draws.
    """

    def __init__(self, seed: int | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: tuple) -> object:
        z_mean, z_log_var = inputs
        epsilon = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape[0]

    def get_config(self) -> dict:
        return {**super().get_config(), "seed": self.seed}


def build_encoder(latent_dim: int, intermediate_dim: int, seed: int | None = None) -> keras.Model:
    """784 → Dense relu → (z_mean, z_log_var, z)."""
    images = keras.Input(shape=(IMAGE_PIXELS,), name="images")
    hidden = layers.Dense(intermediate_dim, activation="relu", name="encoder_hidden")(images)
    z_mean = layers.Dense(latent_dim, name="z_mean")(hidden)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(hidden)
    z = Sampling(seed=seed, name="z")([z_mean, z_log_var])
    return keras.Model(images, [z_mean, z_log_var, z], name="encoder")


def build_decoder(latent_dim: int, intermediate_dim: int) -> keras.Model:
    """latent → Dense relu → Dense 784 logits → sigmoid pixel probabilities."""
    z = keras.Input(shape=(latent_dim,), name="z")
    hidden = layers.Dense(intermediate_dim, activation="relu", name="decoder_hidden")(z)
    logits = layers.Dense(IMAGE_PIXELS, name="decoder_logits")(hidden)
    pixels = layers.Activation("sigmoid", name="pixels")(logits)
    return keras.Model(z, pixels, name="decoder")


def build_vae(latent_dim: int, intermediate_dim: int, seed: int | None = None) -> keras.Model:
    """The whole autoencoder, images → reconstructed images, with ``encoder`` and ``decoder`` nested.

    ``seed`` seeds the sampling noise only; call ``keras.utils.set_random_seed`` first for
    reproducible initial weights (``VaeTrainer`` does). Later stages take the parts with
    ``vae.get_layer("encoder")`` and ``vae.get_layer("decoder")``.
    """
    encoder = build_encoder(latent_dim, intermediate_dim, seed)
    decoder = build_decoder(latent_dim, intermediate_dim)
    images = keras.Input(shape=(IMAGE_PIXELS,), name="images")
    _, _, z = encoder(images)
    return keras.Model(images, decoder(z), name="vae")


def decoder_logits(decoder: keras.Model) -> keras.Model:
    """A view of ``decoder`` that stops before the sigmoid, sharing its weights, for a stable BCE."""
    logits = decoder.get_layer("decoder_logits").output
    return keras.Model(decoder.input, logits, name="decoder_logits")
