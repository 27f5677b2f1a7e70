"""The one way to open a trained VAE: load the ``.keras`` file safely and name its parts.

Train, evaluate, report and the tests all take the encoder, the decoder and the decoder's
logits view from here, so the layer names they depend on are written down once.
"""

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import keras
import numpy as np

from pipeline.core.errors import PipelineError
from pipeline.model.vae import decoder_logits

PREDICT_BATCH_SIZE = 1000


class ModelLoadError(PipelineError):
    """The model file is missing, corrupt, or holds code that safe loading refuses."""


@dataclass(frozen=True)
class TrainedVae:
    """A VAE and its nested parts.

    ``encoder``: images (n, 784) → ``z_mean``, ``z_log_var``, z, each (n, latent_dim);
    ``decoder``: z (n, latent_dim) → pixel means in [0, 1] (n, 784).
    """

    vae: keras.Model

    @property
    def encoder(self) -> keras.Model:
        return self.vae.get_layer("encoder")

    @property
    def decoder(self) -> keras.Model:
        return self.vae.get_layer("decoder")

    @cached_property
    def decoder_logits(self) -> keras.Model:
        """The decoder without its sigmoid, sharing its weights (for a stable cross-entropy)."""
        return decoder_logits(self.decoder)

    @property
    def latent_dim(self) -> int:
        return int(self.decoder.input_shape[-1])

    def encode_mean(self, images: np.ndarray) -> np.ndarray:
        """``z_mean`` (n, latent_dim) of images (n, 784), in batches."""
        return self.encoder.predict(images, batch_size=PREDICT_BATCH_SIZE, verbose=0)[0]

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Pixel means (n, 784) at latent points (n, latent_dim), in batches."""
        return self.decoder.predict(z, batch_size=PREDICT_BATCH_SIZE, verbose=0)

    def decoder_dense_weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The decoder as plain arrays, for code that runs it without Keras (the report's explorer page).

        Hidden kernel (latent_dim, hidden) and bias (hidden,), then logits kernel (hidden, 784) and bias
        (784,): pixels = sigmoid(relu(z · K1 + b1) · K2 + b2).
        """
        hidden = self.decoder.get_layer("decoder_hidden").get_weights()
        logits = self.decoder.get_layer("decoder_logits").get_weights()
        return hidden[0], hidden[1], logits[0], logits[1]


def load_trained_vae(path: str | Path) -> TrainedVae:
    """Load a saved VAE with Keras' safe mode on; raise ``ModelLoadError`` naming the file and the cause.

    Files holding lambdas or unknown code are refused. Keras finds the ``Sampling`` layer because
    importing ``pipeline.model.vae`` registers it (as ``pipeline>Sampling``).
    """
    if not Path(path).is_file():
        raise ModelLoadError(f"{path} not found; run the train stage first")
    try:
        return TrainedVae(keras.models.load_model(path, safe_mode=True))
    except (ValueError, OSError, TypeError) as error:
        raise ModelLoadError(f"cannot load the model {path}: {_root_cause(error)}") from None


def _root_cause(error: BaseException) -> str:
    """The innermost message of a chained error: Keras buries ``Could not locate class`` several levels down."""
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__

