"""The trained VAE: ``TrainedVae``, the façade every step after training uses, and the one safe way to load it.

Train, evaluate, report and the tests all take the encoder, the decoder and the decoder's
logits view from here, so the layer names they depend on are written down once.
"""

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import keras
import numpy as np

from pipeline.core.errors import PipelineError, clipped, require_output
from pipeline.model.vae import LabelError, decoder_logits, one_hot

PREDICT_BATCH_SIZE = 1000
_UNKNOWN_CLASS = re.compile(r"Could not locate (?:class|function) '([^']+)'")
_REGISTERED_NAME = re.compile(r"'registered_name': '([^']+)'")


class ModelLoadError(PipelineError):
    """The model file is missing, corrupt, or holds code that safe loading refuses."""


@dataclass(frozen=True)
class TrainedVae:
    """A VAE and its nested parts, conditional (Sohn et al. 2015) or not.

    ``encoder``: images (n, 784) [, one-hot labels (n, num_classes)] → ``z_mean``, ``z_log_var``, z,
    each (n, latent_dim); ``decoder``: z (n, latent_dim) [, one-hot labels] → pixel means in [0, 1]
    (n, 784). ``encode_mean`` and ``decode`` take class indices (n,) and one-hot them, so callers
    never build the second input themselves.
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
        return int(self.decoder.inputs[0].shape[-1])

    @property
    def num_classes(self) -> int:
        """The size of the one-hot label input; 0 for the unconditional VAE."""
        inputs = self.decoder.inputs
        return int(inputs[1].shape[-1]) if len(inputs) > 1 else 0

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def check_labels(self, labels: np.ndarray | None, count: int) -> None:
        """Raise ``LabelError`` unless there is one label per row exactly when the model is conditional."""
        if labels is None and self.conditional:
            raise LabelError(f"this conditional VAE needs the label of each input ({self.num_classes} classes)")
        if labels is not None and not self.conditional:
            raise LabelError("this VAE is unconditional; it takes no labels")
        if labels is not None and len(labels) != count:
            raise LabelError(f"{len(labels)} labels for {count} inputs")

    def model_inputs(self, first: np.ndarray, labels: np.ndarray | None) -> np.ndarray | list[np.ndarray]:
        """``first`` alone for the unconditional VAE, ``[first, one-hot labels]`` for the conditional one.

        Raises ``LabelError`` as ``check_labels`` does, or for a label outside the model's classes.
        """
        self.check_labels(labels, len(first))
        return first if labels is None else [first, one_hot(labels, self.num_classes)]

    def encode_mean(self, images: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """``z_mean`` (n, latent_dim) of images (n, 784) and, when conditional, their labels (n,), in batches."""
        inputs = self.model_inputs(images, labels)
        return self.encoder.predict(inputs, batch_size=PREDICT_BATCH_SIZE, verbose=0)[0]

    def decode(self, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """Pixel means (n, 784) at latent points (n, latent_dim) and, when conditional, labels (n,), in batches."""
        return self.decoder.predict(self.model_inputs(z, labels), batch_size=PREDICT_BATCH_SIZE, verbose=0)

    def decoder_dense_weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The decoder as plain arrays, for code that runs it without Keras (the report's explorer page).

        Hidden kernel (latent_dim, hidden) and bias (hidden,), then logits kernel (hidden, 784) and bias
        (784,): pixels = sigmoid(relu(z · K1 + b1) · K2 + b2). For the conditional VAE the hidden kernel is
        (latent_dim + num_classes, hidden) and its input z followed by the one-hot label.
        """
        hidden = self.decoder.get_layer("decoder_hidden").get_weights()
        logits = self.decoder.get_layer("decoder_logits").get_weights()
        return hidden[0], hidden[1], logits[0], logits[1]


def load_trained_vae(path: str | Path) -> TrainedVae:
    """Load a saved VAE with Keras' safe mode on; raise ``ModelLoadError`` naming the file and the cause.

    Files holding lambdas or unknown code are refused; the error names the class Keras could not find.
    Keras finds the ``Sampling`` layer because importing ``pipeline.model.vae`` (as this module does)
    registers it, as ``pipeline>Sampling``.
    """
    require_output(Path(path), "train", ModelLoadError)
    try:
        return TrainedVae(keras.models.load_model(path, safe_mode=True))
    except (ValueError, OSError, TypeError) as error:
        raise ModelLoadError(f"cannot load the model {path}: {_root_cause(error)}") from None


def _root_cause(error: BaseException) -> str:
    """The innermost message of a chained error, in one short line: Keras buries ``Could not locate class``
    several levels down, and follows it with a dump of the whole layer config."""
    while (inner := error.__cause__ or error.__context__) is not None:
        error = inner
    text = str(error).strip()
    unknown = _UNKNOWN_CLASS.search(text)
    if unknown:
        registered = _REGISTERED_NAME.search(text)
        known_as = f" (registered as {registered.group(1)!r})" if registered else ""
        return (f"Could not locate class {unknown.group(1)!r}{known_as}: the file needs code that no imported "
                "module registers")
    return clipped(text.splitlines()[0] if text else type(error).__name__, 300)

