"""The small convolutional classifier whose features measure the VAE's samples; importing it imports Keras.

A LeNet-like network (LeCun et al. 1998): two 5 × 5 convolutions with max pooling, a 128-unit ReLU layer
named ``features`` and a linear layer of class logits. FID, precision and recall read the ``features``
layer, the analogue of Inception-v3's pool features in FID (Heusel et al. 2017): the last layer before the
logits, so it describes what the network needs to tell classes apart without collapsing onto the class.

It trains with Keras' ``fit`` (Adam, the rate decayed linearly to 0). An XLA-compiled epoch loop like the
VAE's (``pipeline.model.trainer``) cost six times ``fit``'s CPU here, since XLA's CPU convolutions do not use
oneDNN; a graph-mode loop without XLA would save about a quarter (``benchmarks/classifier_speed.py``).
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

# isort: off
import pipeline.model  # noqa: F401  (first: Keras and TensorFlow load there, their start-up lines held back)
import keras
# isort: on

from pipeline.core.errors import PipelineError
from pipeline.core.param_sections import IMAGE_PIXELS
from pipeline.core.params import Params

FEATURES_LAYER = "features"
FEATURE_UNITS = 128
IMAGE_SIDE = 28
PREDICT_BATCH_SIZE = 1000


class ClassifierError(PipelineError):
    """The classifier file is missing, unreadable, or does not fit the images it is given."""


@dataclass(frozen=True)
class ClassifierConfig:
    """What training needs from params ``classifier``, with the dataset's class count."""

    num_classes: int
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int

    @classmethod
    def from_params(cls, params: Params, num_classes: int) -> "ClassifierConfig":
        return cls(num_classes=num_classes, **params.classifier.model_dump())


def build_classifier(num_classes: int) -> keras.Model:
    """Images (n, 784) in [0, 1] → class logits (n, num_classes), with the (n, 128) ``features`` layer inside."""
    layers = keras.layers
    images = keras.Input(shape=(IMAGE_PIXELS,), name="images")
    hidden = layers.Reshape((IMAGE_SIDE, IMAGE_SIDE, 1))(images)
    for filters in (16, 32):
        hidden = layers.Conv2D(filters, 5, activation="relu")(hidden)
        hidden = layers.MaxPooling2D()(hidden)
    hidden = layers.Flatten()(hidden)
    features = layers.Dense(FEATURE_UNITS, activation="relu", name=FEATURES_LAYER)(hidden)
    logits = layers.Dense(num_classes, name="logits")(features)
    return keras.Model(images, logits, name="classifier")


def train_classifier(images: np.ndarray, labels: np.ndarray, config: ClassifierConfig,
                     on_epoch_end: Callable[[int, dict[str, float]], None] = lambda epoch, logs: None) -> keras.Model:
    """Fit a new classifier on ``images`` (n, 784) and class indices ``labels`` (n,); same config, same weights.

    ``on_epoch_end(epoch, logs)`` hears each epoch's mean ``loss`` (cross-entropy, nats) and ``accuracy``.
    """
    keras.utils.set_random_seed(config.seed)
    model = build_classifier(config.num_classes)
    steps = config.epochs * -(-len(images) // config.batch_size)
    schedule = keras.optimizers.schedules.PolynomialDecay(config.learning_rate, steps, end_learning_rate=0.0)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    report = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: on_epoch_end(epoch, dict(logs or {})))
    model.fit(images, labels.astype(np.int32), batch_size=config.batch_size, epochs=config.epochs, shuffle=True,
              verbose=0, callbacks=[report])
    return model


@dataclass(frozen=True)
class FeatureExtractor:
    """A trained classifier read at its ``features`` layer and its logits, in one pass over the images."""

    classifier: keras.Model

    @cached_property
    def _features_and_logits(self) -> keras.Model:
        return keras.Model(self.classifier.inputs, [self.classifier.get_layer(FEATURES_LAYER).output,
                                                    self.classifier.outputs[0]])

    @property
    def num_classes(self) -> int:
        return int(self.classifier.outputs[0].shape[-1])

    def read(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(features (n, 128) float32, predicted class (n,) int)`` of images (n, 784) in [0, 1].

        Raises ``ClassifierError`` for images of another shape.
        """
        if images.ndim != 2 or images.shape[1] != IMAGE_PIXELS:
            raise ClassifierError(f"the classifier takes images of shape (n, {IMAGE_PIXELS}), got {images.shape}")
        features, logits = self._features_and_logits.predict(images, batch_size=PREDICT_BATCH_SIZE, verbose=0)
        return features, np.argmax(logits, axis=1)

    def accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
        """The share of ``images`` whose predicted class is their label (n,)."""
        return float(np.mean(self.read(images)[1] == labels))


def load_classifier(path: Path) -> FeatureExtractor:
    """The classifier saved at ``path`` (Keras safe mode); ``ClassifierError`` naming the file otherwise."""
    if not Path(path).is_file():
        raise ClassifierError(f"{path} not found; run the classifier stage first")
    try:
        model = keras.models.load_model(path, safe_mode=True)
    except (ValueError, OSError, TypeError) as error:
        raise ClassifierError(f"cannot load the classifier {path}: {str(error).splitlines()[0][:300]}") from None
    if FEATURES_LAYER not in {layer.name for layer in model.layers}:
        raise ClassifierError(f"{path} has no {FEATURES_LAYER!r} layer; it is not this pipeline's classifier")
    return FeatureExtractor(model)
