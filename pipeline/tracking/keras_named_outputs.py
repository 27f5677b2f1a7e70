"""MLflow pyfunc loader for a Keras model whose outputs are a dict: ``predict`` answers ``{name: array}``.

MLflow's Keras flavor turns a dict of outputs into a 0-d object array, which neither Python callers
nor ``mlflow models serve`` can use. This file is copied into such a logged model (its ``code/``
folder) and imported there as the top-level module ``keras_named_outputs``, so it may import only
Keras and NumPy, never ``pipeline``. The served answer is then
``{"predictions": {"z_mean": [[...]], "z_log_var": [[...]]}}``.
"""

import os

import numpy as np

MODEL_FILE = "model.keras"
"""Where MLflow's Keras flavor saves the model inside its ``data`` folder."""


class NamedOutputs:
    """The pyfunc model: Keras ``predict`` with its dict of outputs made NumPy arrays."""

    def __init__(self, model: object) -> None:
        self.model = model

    def predict(self, data: object, params: dict | None = None) -> dict[str, np.ndarray]:
        """``data``: an array, or a dict of arrays by input name, as MLflow's schema enforcement passes it."""
        outputs = self.model.predict(data, verbose=0)
        return {name: np.asarray(value) for name, value in outputs.items()}


def _load_pyfunc(data_path: str) -> NamedOutputs:
    """Called by ``mlflow.pyfunc.load_model`` with the model's ``data`` folder."""
    import keras  # loads TensorFlow: only when a model is really loaded

    return NamedOutputs(keras.saving.load_model(os.path.join(data_path, MODEL_FILE), safe_mode=True))
