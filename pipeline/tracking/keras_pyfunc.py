"""MLflow pyfunc loader of the logged Keras models: it answers only what the model can answer, by name.

This file is copied into every logged model (its ``code/`` folder) and imported there as the
top-level module ``keras_pyfunc``, so it may import only Keras, NumPy and MLflow, never ``pipeline``.
``mlflow.pyfunc.load_model`` and ``mlflow models serve`` then predict through it; the Keras flavor
(``mlflow.keras.load_model``) is untouched and returns the plain ``keras.Model``.

MLflow's tensor signature checks names, shapes and dtypes, not values: JSON ``NaN``, ``null`` (read
as NaN), ``Infinity`` and ``1e39`` (beyond float32, read as infinity) used to get HTTP 200 with a
plausible image, a fixed code, or a body holding bare ``NaN``, which is not JSON. Here a request
with a value that is not a finite number, a pixel outside [0, 1], or inputs so large that the answer
is not finite raises ``MlflowException`` with ``INVALID_PARAMETER_VALUE``, which the scoring server
answers with HTTP 400 and a JSON body naming the input, the row and the problem. A dict of outputs
(the encoder's ``z_mean``, ``z_log_var``) comes back as a dict of arrays, not MLflow Keras flavor's
0-d object array.
"""

import os
from typing import TYPE_CHECKING, Any

import numpy as np
from mlflow.exceptions import MlflowException

if TYPE_CHECKING:
    import keras

MODEL_FILE = "model.keras"
"""Where MLflow's Keras flavor saves the model inside its ``data`` folder."""
RANGES = {"images": (0.0, 1.0)}
"""Inputs with a bounded domain: pixels are grey levels in [0, 1] (Bernoulli means), not 0 … 255."""
BATCH_ROWS = 4096
"""Rows per Keras call. ``predict`` spends a few hundred milliseconds per call setting up its data pipeline
(``benchmarks/serve_load.py``: about 0.4 s of a served one-point request), ``predict_on_batch`` a few
milliseconds; calls of at most this many rows keep a large request's memory bounded."""


class KerasPyfunc:
    """The pyfunc model: Keras ``predict`` on inputs checked to be finite and in range, outputs checked finite."""

    def __init__(self, model: "keras.Model") -> None:
        self.model = model
        self.input_names = [tensor.name for tensor in model.inputs]

    def predict(self, data: object, params: dict[str, Any] | None = None) -> np.ndarray | dict[str, np.ndarray]:
        """``data``: an array, or a dict of arrays by input name, as MLflow's schema enforcement passes it.

        Raises ``MlflowException`` (``INVALID_PARAMETER_VALUE``, HTTP 400 when served) for an input value
        that is not finite or out of range, or an answer that is not finite.
        """
        inputs = ({name: np.asarray(values) for name, values in data.items()} if isinstance(data, dict)
                  else {self.input_names[0]: np.asarray(data)})
        for name, values in inputs.items():
            _check_input(name, values)
        outputs = self._predict(inputs)
        for name, values in (outputs if isinstance(outputs, dict) else {"output": outputs}).items():
            _check_output(name, values)
        return outputs

    def _predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray | dict[str, np.ndarray]:
        """The model's answer, ``BATCH_ROWS`` rows per call, as NumPy arrays (a dict of them for named outputs)."""
        rows = len(next(iter(inputs.values())))
        starts = range(0, max(rows, 1), BATCH_ROWS)
        parts = [self.model.predict_on_batch({name: rows_of[start:start + BATCH_ROWS] for name, rows_of in
                                              inputs.items()}) for start in starts]
        if isinstance(parts[0], dict):
            return {name: np.concatenate([np.asarray(part[name]) for part in parts]) for name in parts[0]}
        return np.concatenate([np.asarray(part) for part in parts])


def _check_input(name: str, values: np.ndarray) -> None:
    if not np.issubdtype(values.dtype, np.number):
        return  # the signature has refused it already, or the model will
    finite = np.isfinite(values)
    if not finite.all():
        raise MlflowException.invalid_parameter_value(
            f"input {name!r} holds {np.size(finite) - np.count_nonzero(finite)} value(s) that are not finite numbers, "
            f"first at {_position(~finite)}: NaN, null, Infinity and numbers beyond float32 (±3.4e38) are refused; "
            "send finite numbers")
    low, high = RANGES.get(name, (-np.inf, np.inf))
    outside = (values < low) | (values > high)
    if outside.any():
        raise MlflowException.invalid_parameter_value(
            f"input {name!r} holds {np.count_nonzero(outside)} value(s) outside [{low:g}, {high:g}], first "
            f"{values[np.unravel_index(np.argmax(outside), values.shape)]:g} at {_position(outside)}; "
            "pixels are grey levels in [0, 1] (divide 0…255 levels by 255)")


def _check_output(name: str, values: np.ndarray) -> None:
    finite = np.isfinite(values)
    if not finite.all():
        raise MlflowException.invalid_parameter_value(
            f"output {name!r} is not finite at {_position(~finite)}: the input is too large for the model's "
            "float32 arithmetic; send smaller values")


def _position(mask: np.ndarray) -> str:
    """``row 3, column 17`` of the first true element of a (rows, columns) ``mask``."""
    index = np.unravel_index(np.argmax(mask), mask.shape)
    return ", ".join(f"{axis} {position}" for axis, position in zip(("row", "column"), index, strict=False))


def _load_pyfunc(data_path: str) -> KerasPyfunc:
    """Called by ``mlflow.pyfunc.load_model`` with the model's ``data`` folder."""
    import keras  # loads TensorFlow: only when a model is really loaded

    return KerasPyfunc(keras.saving.load_model(os.path.join(data_path, MODEL_FILE), safe_mode=True))
