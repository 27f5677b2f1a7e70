"""Views of a trained VAE built from standard Keras layers only, so they load where this project is absent.

The trained encoder ends in the project's ``Sampling`` layer, which Keras can rebuild only after
``import pipeline.model.vae`` has registered it. The views below share the trained weights but stop
before sampling, so their ``.keras`` files hold nothing but built-in layers:

- ``encoder``: images (n, 784) → ``{"z_mean": (n, latent_dim), "z_log_var": (n, latent_dim)}``;
- ``decoder``: z (n, latent_dim) → pixel means in [0, 1] (n, 784);
- ``vae``: images (n, 784) → pixel means (n, 784) decoded at z = ``z_mean``: a deterministic reconstruction.

Inputs are passed to ``keras.Model`` as a list, so a view accepts a bare array, a list, or a dict keyed
by input name (MLflow's pyfunc passes the latter) without Keras' input-structure warning. A second
input (a label for a conditional VAE) is carried through by name.
"""

import keras

from pipeline.core.errors import PipelineError

ENCODER, DECODER, VAE = "encoder", "decoder", "vae"
CODE_OUTPUTS = ("z_mean", "z_log_var")
LATENT_INPUT = "z"


class NotPortableError(PipelineError):
    """A view holds a layer that is not Keras' own, so it would not load without this project's code."""


def mean_encoder(encoder: keras.Model) -> keras.Model:
    """The encoder without its sampling layer: every input → ``{"z_mean", "z_log_var"}``."""
    outputs = {name: encoder.get_layer(name).output for name in CODE_OUTPUTS}
    return keras.Model(list(encoder.inputs), outputs, name=ENCODER)


def generator(decoder: keras.Model) -> keras.Model:
    """The decoder with list inputs: z (and any further input) → pixel means."""
    return keras.Model(list(decoder.inputs), decoder.outputs[0], name=DECODER)


def reconstruction(encoder: keras.Model, decoder: keras.Model) -> keras.Model:
    """images (and any input the two share by name) → decoder(``z_mean``): the VAE without its noise."""
    inputs = [keras.Input(shape=tensor.shape[1:], dtype=tensor.dtype, name=tensor.name) for tensor in encoder.inputs]
    by_name = {tensor.name: tensor for tensor in inputs}
    z_mean = mean_encoder(encoder)(inputs)["z_mean"]
    decoder_inputs = [z_mean if tensor.name == LATENT_INPUT else by_name[tensor.name] for tensor in decoder.inputs]
    return keras.Model(inputs, generator(decoder)(decoder_inputs), name=VAE)


def portable_views(encoder: keras.Model, decoder: keras.Model) -> dict[str, keras.Model]:
    """The three views by name; raise ``NotPortableError`` if any holds a layer from outside Keras."""
    views = {ENCODER: mean_encoder(encoder), DECODER: generator(decoder), VAE: reconstruction(encoder, decoder)}
    for name, view in views.items():
        foreign = sorted(foreign_layers(view))
        if foreign:
            raise NotPortableError(f"the {name} view holds layers that need this project's code: {', '.join(foreign)}")
    return views


def foreign_layers(model: keras.Model) -> set[str]:
    """Class names of the layers in ``model`` (nested models included) that are not Keras' own."""
    found: set[str] = set()
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found |= foreign_layers(layer)
        elif not type(layer).__module__.startswith("keras."):
            found.add(type(layer).__name__)
    return found
