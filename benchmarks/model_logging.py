"""Seconds the train stage spends logging its model: three MLflow logged models against the former artifact.

(a) baseline: what the train stage did before the logged models, the whole VAE saved with
``mlflow.keras.save_model`` into a folder made first and uploaded as the run's ``model`` artifact;
(b) ``log_vae_models``: the encoder, decoder and vae logged models with signatures and examples.
Both log the same trained model to fresh SQLite stores in one process; medians over ``--repeats``.

    uv run python benchmarks/model_logging.py [--model models/vae.keras] [--prepared data/prepared] [--repeats 3]
"""

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import keras
import mlflow
import mlflow.keras
import numpy as np
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from pipeline.core.paths import MODEL_FILE, PREPARED_DIR
from pipeline.data.splits import load_split
from pipeline.model.trained_vae import TrainedVae, load_trained_vae
from pipeline.tracking.logged_models import log_vae_models
from pipeline.train import INPUT_EXAMPLE_ROWS


def log_artifact_model(trained: TrainedVae, images: np.ndarray) -> None:
    """The former ``log_keras_model``: a Keras-flavor folder logged as plain run artifacts, no logged model."""
    signature = infer_signature(images, trained.vae.predict(images, verbose=0))
    with tempfile.TemporaryDirectory() as scratch:
        saved = Path(scratch) / "model"
        saved.mkdir()
        mlflow.keras.save_model(trained.vae, str(saved), signature=signature, input_example=images,
                                pip_requirements=[f"keras=={keras.__version__}"])
        mlflow.log_artifacts(str(saved), artifact_path="model")


def log_logged_models(trained: TrainedVae, images: np.ndarray) -> None:
    log_vae_models(trained.encoder, trained.decoder, {"images": images}, step=5)


def timed(log: Callable[[TrainedVae, np.ndarray], None], trained: TrainedVae, images: np.ndarray,
          template: Path, folder: Path) -> tuple[float, float]:
    """Wall and CPU seconds of ``log`` inside a run of a fresh copy of the store."""
    database = folder / "mlflow.db"
    shutil.copyfile(template, database)
    mlflow.set_tracking_uri(f"sqlite:///{database}")
    experiment = mlflow.create_experiment("bench", artifact_location=(folder / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        wall, cpu = time.perf_counter(), time.process_time()
        log(trained, images)
        return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=MODEL_FILE)
    parser.add_argument("--prepared", type=Path, default=PREPARED_DIR)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    trained = load_trained_vae(args.model)
    images = load_split(args.prepared, "train")[0][:INPUT_EXAMPLE_ROWS]
    with tempfile.TemporaryDirectory() as scratch:
        template = Path(scratch) / "template.db"
        MlflowClient(tracking_uri=f"sqlite:///{template}").search_experiments()  # migrate once
        results: dict[str, list[tuple[float, float]]] = {"artifact (before)": [], "logged models": []}
        for repeat in range(args.repeats):  # alternate, so load on the machine hits both alike
            for label, log in (("artifact (before)", log_artifact_model), ("logged models", log_logged_models)):
                folder = Path(scratch) / f"{repeat}-{len(results[label])}-{label[:3]}"
                folder.mkdir()
                results[label].append(timed(log, trained, images, template, folder))
    medians = {label: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
               for label, runs in results.items()}
    for label, (wall, cpu) in medians.items():
        print(f"{label:18s} wall {wall:6.2f} s   cpu {cpu:6.2f} s   (median of {args.repeats})")
    (before, _), (after, _) = medians.values()
    print(f"added to the train stage: {after - before:+.2f} s wall ({after / before:.2f}x the former logging)")


if __name__ == "__main__":
    main()
