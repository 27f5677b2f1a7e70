"""The trained VAE as MLflow 3 logged models that load and serve without this project's code.

Three logged models per training run, each with a ``model_id``, a tensor signature and an input
example, shown on the run page and the experiment's Models page:

- ``encoder``: images float32 (-1, 784) → ``{"z_mean", "z_log_var"}`` float32 (-1, latent_dim) each;
- ``decoder``: ``z`` float32 (-1, latent_dim) → ``pixels`` float32 (-1, 784), Bernoulli means in [0, 1];
- ``vae``: images → pixels decoded at ``z_mean`` (deterministic reconstruction), for Keras users.

All three are MLflow Keras-flavor models built from standard Keras layers only
(``pipeline.model.serving``), so ``mlflow.keras.load_model``, ``mlflow.pyfunc.load_model`` and
``mlflow models serve --env-manager local`` need neither ``pipeline`` nor its ``Sampling`` layer. Their
pyfunc flavor loads through ``keras_pyfunc``, copied into each model, which refuses inputs that are not
finite or out of range with HTTP 400 (MLflow's signature checks shapes and dtypes, not values) and keeps
the encoder's two outputs named.
"""

import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import mlflow
import mlflow.pyfunc
import numpy as np
from mlflow.models import Model, ModelSignature
from mlflow.types import Schema, TensorSpec

from pipeline.core.quiet import verbose
from pipeline.tracking import keras_pyfunc
from pipeline.tracking.store import store_errors

if TYPE_CHECKING:
    import keras

PIXELS = "pixels"
"""The name of the decoder's and the reconstruction's single output in signatures."""
CODE_DIR = "code"
DATA_DIR = "data"
"""The folder of MLflow's Keras flavor that holds ``model.keras``; ``keras_pyfunc`` reads it too."""
QUIET_LOGGERS = ("mlflow.utils.environment",)
"""Warns for every model that ``pip`` has no version: true in a uv environment, and no news."""


def log_vae_models(encoder: "keras.Model", decoder: "keras.Model", example_inputs: Mapping[str, np.ndarray],
                   step: int) -> dict[str, str]:
    """Log ``encoder``, ``decoder`` and ``vae`` with the active run; return ``{name: model_id}``.

    ``example_inputs``: a few rows of each encoder input by name, e.g. ``{"images": (5, 784) float32}``;
    the decoder's example is their ``z_mean``. ``step`` (the last epoch) links the run's metrics of that
    step to each model. ``models:/<model_id>`` then loads a model. Raises ``NotPortableError`` when a view
    would need this project's code, ``TrackingError`` when the store fails.
    """
    from pipeline.model.serving import ENCODER, LATENT_INPUT, portable_views  # the caller has loaded Keras

    views = portable_views(encoder, decoder)
    arrays = dict(example_inputs)
    arrays[LATENT_INPUT] = _outputs(views[ENCODER], _inputs_of(views[ENCODER], arrays))["z_mean"]
    requirements = serving_requirements()
    with _quiet(QUIET_LOGGERS):
        return {name: _log_view(name, view, _inputs_of(view, arrays), requirements, step)
                for name, view in views.items()}


TENSORFLOW_BUILDS = (("tensorflow-cpu", "sys_platform == 'linux' and platform_machine == 'x86_64'"),
                     ("tensorflow", "sys_platform != 'linux' or platform_machine != 'x86_64'"))
"""pyproject.toml's TensorFlow build per platform, as (distribution, PEP 508 marker): ``tensorflow-cpu`` where
its wheel exists and is this project's default, the one ``tensorflow`` wheel elsewhere."""


def serving_requirements() -> list[str]:
    """``keras==X`` and TensorFlow ``==Y`` under each platform's build (``TENSORFLOW_BUILDS``), the versions
    installed here, read from package metadata.

    A serving host installs the build its platform gets from pyproject.toml. The marker also keeps MLflow's
    requirement check on metadata: for a pinned ``tensorflow`` that is not installed under that name (this host
    has ``tensorflow-cpu``) it falls back to ``import tensorflow``, which a process that trained on JAX must not
    pay. Raises ``PackageNotFoundError`` without TensorFlow.
    """
    tensorflow = _tensorflow_version()
    return [f"keras=={version('keras')}",
            *(f"{build}=={tensorflow}; {marker}" for build, marker in TENSORFLOW_BUILDS)]


def _tensorflow_version() -> str:
    try:
        return version("tensorflow-cpu")
    except PackageNotFoundError:
        return version("tensorflow")


def _inputs_of(view: "keras.Model", arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {tensor.name: arrays[tensor.name] for tensor in view.inputs}


def _outputs(view: "keras.Model", inputs: dict[str, np.ndarray]) -> np.ndarray | dict[str, np.ndarray]:
    """The view's answer on a few rows, called eagerly: ``predict`` would trace a new function per view."""
    import keras

    return keras.tree.map_structure(keras.ops.convert_to_numpy, view(inputs))


@store_errors
def _log_view(name: str, view: "keras.Model", inputs: dict[str, np.ndarray], requirements: list[str],
              step: int) -> str:
    outputs = _outputs(view, inputs)
    outputs_by_name = outputs if isinstance(outputs, dict) else {PIXELS: outputs}
    signature = ModelSignature(inputs=tensor_schema(inputs), outputs=tensor_schema(outputs_by_name))
    example = next(iter(inputs.values())) if len(inputs) == 1 else inputs
    info = Model.log(
        artifact_path=None, name=name, flavor=_KERAS_FLAVOR, model=view, signature=signature,
        input_example=example, pip_requirements=requirements, step=step,
        validate_serving_input=False,  # the tests load and serve each model for real
    )
    return info.model_id


def tensor_schema(arrays: Mapping[str, np.ndarray]) -> Schema:
    """Named tensor specs with a free batch dimension: ``{"z": (5, 2) float32}`` → ``z: float32 (-1, 2)``."""
    return Schema([TensorSpec(np.asarray(array).dtype, (-1, *np.shape(array)[1:]), name)
                   for name, array in arrays.items()])


def _save_keras_model(path: str, mlflow_model: Model, validate_serving_input: bool = True,
                      **options: object) -> None:
    """``mlflow.keras.save_model`` as a flavor for ``Model.log``, with two changes.

    The folder is made first: the Keras flavor writes the input example before creating it
    (mlflow/mlflow#16183, open in MLflow 3.17). The pyfunc flavor loads through ``keras_pyfunc``, which
    checks every value and keeps a dict of outputs a dict. ``validate_serving_input`` is read by
    ``Model.log`` itself.
    """
    import mlflow.keras

    del validate_serving_input
    os.makedirs(path, exist_ok=True)
    mlflow.keras.save_model(path=path, mlflow_model=mlflow_model, **options)
    _load_through_keras_pyfunc(path, mlflow_model)


def _load_through_keras_pyfunc(path: str, mlflow_model: Model) -> None:
    """Replace the Keras flavor's pyfunc loader by ``keras_pyfunc``, copied into the model's ``code/``."""
    loader = Path(keras_pyfunc.__file__)
    os.makedirs(os.path.join(path, CODE_DIR))
    shutil.copyfile(loader, os.path.join(path, CODE_DIR, loader.name))
    environment = mlflow_model.flavors[mlflow.pyfunc.FLAVOR_NAME][mlflow.pyfunc.ENV]
    mlflow.pyfunc.add_to_model(
        mlflow_model, loader_module=loader.stem, data=DATA_DIR, code=CODE_DIR,
        conda_env=environment["conda"], python_env=environment["virtualenv"],
    )
    mlflow_model.save(os.path.join(path, "MLmodel"))


_KERAS_FLAVOR = SimpleNamespace(__name__="mlflow.keras", save_model=_save_keras_model)
"""What ``Model.log`` needs of a flavor: its name (recorded on the logged model) and ``save_model``."""


@contextmanager
def _quiet(names: tuple[str, ...]) -> Iterator[None]:
    """Hold these loggers' warnings inside the block, unless the user asked for third-party output."""
    if verbose():
        yield
        return
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@store_errors
def attach_file(model_ids: Mapping[str, str], path: Path) -> None:
    """Add the file at ``path`` (e.g. the model card) to each logged model's artifacts, beside its ``MLmodel``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    for model_id in model_ids.values():
        client.log_model_artifact(model_id, str(path))
