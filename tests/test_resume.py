"""Interrupted trainings resume exactly: the checkpoint file, the training loop, and the stage killed for real."""

import contextlib
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import yaml
from backends import BACKENDS, on_backend
from helpers import REPO_ROOT, synthetic_digits, without_timing
from mlflow.tracking import MlflowClient

from pipeline.core.params import parse_params
from pipeline.core.paths import CHECKPOINT_DIR, MODEL_FILE, RUN_FILE, TRAIN_HISTORY_FILE
from pipeline.data.splits import save_split
from pipeline.model.checkpoints import EpochCheckpoint, fingerprint
from pipeline.model.trained_vae import load_trained_vae
from pipeline.model.trainer import TrainConfig, make_trainer
from pipeline.tracking.run_lifecycle import HOST_TAG, PID_TAG, PIPELINE_TAG, ensure_experiment, fail_abandoned_runs
from pipeline.tracking.store import configure

CHECKPOINT_FILE = CHECKPOINT_DIR / "train.npz"
EPOCHS = 4
# 6 000 images through a 512-unit VAE: about half a second per epoch here, so a signal sent after the
# first checkpoint lands well before the last epoch ends.
STAGE_PARAMS: dict[str, Any] = {
    "data": {"dataset": "mnist"},
    "model": {"latent_dim": 2, "intermediate_dim": 512},
    "train": {"epochs": EPOCHS, "batch_size": 100, "optimizer": "rmsprop", "learning_rate": 0.001,
              "beta": 0.1, "seed": 3, "experiment": "vae-resume-test"},
}
STAGE_TIMEOUT_S = 240.0
POLL_S = 0.02


def stage_params(backend: str) -> dict[str, Any]:
    return {**STAGE_PARAMS, "train": {**STAGE_PARAMS["train"], "backend": backend}}


def stage_config(backend: str = "tensorflow") -> TrainConfig:
    """The TrainConfig the stage builds from STAGE_PARAMS on ``backend``."""
    return TrainConfig.from_params(parse_params(stage_params(backend)))




class ArrayVariable:
    """A numpy-backed implementation of the checkpoint's ``Variable`` protocol."""

    def __init__(self, value: np.ndarray) -> None:
        self.value = np.array(value)

    def numpy(self) -> np.ndarray:
        return self.value.copy()

    def assign(self, value: np.ndarray) -> "ArrayVariable":
        self.value = np.array(value)
        return self


def some_variables(seed: int) -> list[ArrayVariable]:
    """A weight matrix, a bias and a seed-generator state, as a model has."""
    rng = np.random.default_rng(seed)
    return [
        ArrayVariable(rng.standard_normal((3, 4)).astype(np.float32)),
        ArrayVariable(rng.standard_normal(4).astype(np.float32)),
        ArrayVariable(rng.integers(0, 2**31, size=2).astype(np.uint32)),
    ]


def values(variables: list[ArrayVariable]) -> list[np.ndarray]:
    return [variable.numpy() for variable in variables]


def assert_same_arrays(actual: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert len(actual) == len(expected)
    for mine, theirs in zip(actual, expected, strict=True):
        assert mine.dtype == theirs.dtype
        np.testing.assert_array_equal(mine, theirs)


HISTORY = [{"loss": 631 / 3, "val_loss": 205.1, "seconds": 0.5},
           {"loss": 180.0 + 1e-9, "val_loss": 179 / 7, "seconds": 0.4}]


def test_checkpoint_round_trips_variables_and_history(tmp_path: Path) -> None:
    saved = some_variables(seed=1)
    EpochCheckpoint(tmp_path / "ckpt.npz", "abc").save(saved, HISTORY)

    restored = some_variables(seed=2)
    history = EpochCheckpoint(tmp_path / "ckpt.npz", "abc").restore(restored)

    assert history == HISTORY
    assert_same_arrays(values(restored), values(saved))


def test_checkpoint_of_other_fingerprint_restores_nothing_and_leaves_variables_untouched(tmp_path: Path) -> None:
    EpochCheckpoint(tmp_path / "ckpt.npz", "other params").save(some_variables(seed=1), HISTORY)
    variables = some_variables(seed=2)

    assert EpochCheckpoint(tmp_path / "ckpt.npz", "these params").restore(variables) == []
    assert_same_arrays(values(variables), values(some_variables(seed=2)))


def test_missing_checkpoint_restores_nothing(tmp_path: Path) -> None:
    variables = some_variables(seed=2)
    assert EpochCheckpoint(tmp_path / "absent.npz", "abc").restore(variables) == []
    assert_same_arrays(values(variables), values(some_variables(seed=2)))


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _byte_flipped_in_the_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


CORRUPTIONS = {
    "truncated": _truncated,
    "empty": lambda data: b"",
    "not-a-zip": lambda data: b"this is not a checkpoint\n" * 10,
    "byte-flipped": _byte_flipped_in_the_middle,
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_corrupt_checkpoint_restores_nothing_and_leaves_variables_untouched(tmp_path: Path, corruption: str) -> None:
    path = tmp_path / "ckpt.npz"
    big = [ArrayVariable(np.arange(20_000, dtype=np.float32)), *some_variables(seed=1)]
    EpochCheckpoint(path, "abc").save(big, HISTORY)
    path.write_bytes(CORRUPTIONS[corruption](path.read_bytes()))
    variables = [ArrayVariable(np.zeros(20_000, dtype=np.float32)), *some_variables(seed=2)]

    assert EpochCheckpoint(path, "abc").restore(variables) == []
    assert_same_arrays(values(variables), [np.zeros(20_000, dtype=np.float32), *values(some_variables(seed=2))])


OTHER_ARCHITECTURES = {
    "fewer-variables": lambda variables: variables[:2],
    "more-variables": lambda variables: [*variables, ArrayVariable(np.ones(5, np.float32))],
    "other-shape": lambda variables: [ArrayVariable(variables[0].numpy().T), *variables[1:]],
}


@pytest.mark.parametrize("architecture", OTHER_ARCHITECTURES)
def test_checkpoint_of_another_architecture_under_the_same_fingerprint_restores_nothing(
    tmp_path: Path, architecture: str
) -> None:
    """The fingerprint covers params and data, not the code: a model changed in between must start afresh."""
    EpochCheckpoint(tmp_path / "ckpt.npz", "abc").save(OTHER_ARCHITECTURES[architecture](some_variables(1)), HISTORY)
    variables = some_variables(seed=2)
    assert EpochCheckpoint(tmp_path / "ckpt.npz", "abc").restore(variables) == []
    assert_same_arrays(values(variables), values(some_variables(seed=2)))


def test_fingerprint_changes_with_config_and_with_data() -> None:
    config = asdict(stage_config())
    data = synthetic_digits(50, seed=1)[0]
    one_pixel = data.copy()
    one_pixel[17, 300] = 1.0 - one_pixel[17, 300]
    base = fingerprint(config, data)

    assert fingerprint(dict(config), data.copy()) == base
    assert fingerprint({**config, "epochs": config["epochs"] + 1}, data) != base
    assert fingerprint({**config, "learning_rate": 0.002}, data) != base
    assert fingerprint(config, one_pixel) != base
    assert fingerprint(config, data[:-1]) != base
    assert fingerprint(config, data.reshape(100, 392)) != base, "same bytes, other shape"
    assert fingerprint(config, data.astype(np.float64)) != base



def test_fail_abandoned_runs_spares_live_processes_other_hosts_and_non_training_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_store: Path
) -> None:
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    configure()
    experiment_id = ensure_experiment("vae-abandoned")
    client = MlflowClient()
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    here = socket.gethostname()

    def running(tags: dict[str, str]) -> str:
        return client.create_run(experiment_id, tags=tags).info.run_id

    alive = running({PIPELINE_TAG: "train", HOST_TAG: here, PID_TAG: str(os.getpid())})
    elsewhere = running({PIPELINE_TAG: "train", HOST_TAG: f"not-{here}",
                         PID_TAG: str(finished.pid)})
    by_hand = running({HOST_TAG: here, PID_TAG: str(finished.pid)})
    abandoned = running({PIPELINE_TAG: "train", HOST_TAG: here,
                         PID_TAG: str(finished.pid)})

    assert fail_abandoned_runs(experiment_id) == [abandoned]

    for run_id in (alive, elsewhere, by_hand):
        run = client.get_run(run_id)
        assert run.info.status == "RUNNING", run.data.tags
        assert "pipeline.failure" not in run.data.tags
    assert client.get_run(abandoned).info.status == "FAILED"
    assert "pipeline.failure" in client.get_run(abandoned).data.tags


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """The stage's training and held-out images."""
    return synthetic_digits(6000, seed=1)[0], synthetic_digits(1000, seed=2)[0]


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend in turn, for the trainings and stage runs of this module."""
    return request.param


@dataclass(frozen=True)
class Trained:
    """A training's history (without timings), optimizer steps, every variable and the model weights at its end."""

    history: list[dict[str, float]]
    iterations: int
    state: list[np.ndarray]
    weights: list[np.ndarray]


def _trained(trainer: object, history: list[dict[str, float]]) -> Trained:
    """Every model variable (the sampling seed state included) and every optimizer variable, as arrays."""
    variables = [*trainer.vae.variables, *trainer.optimizer.variables]
    return Trained(without_timing(history), int(trainer.optimizer.iterations.numpy()),
                   [np.asarray(variable) for variable in variables], [np.asarray(w) for w in trainer.vae.weights])


def _train_through(backend: str, digits: tuple[np.ndarray, np.ndarray]) -> Trained:
    trainer = make_trainer(stage_config(backend))
    return _trained(trainer, trainer.fit(*digits))


@pytest.fixture(scope="module")
def uninterrupted(backend: str, digits: tuple[np.ndarray, np.ndarray]) -> Trained:
    """The stage's training run straight through, without a checkpoint, on ``backend``."""
    return on_backend(backend, _train_through, backend, digits)


def _interrupt_and_resume(backend: str, digits: tuple[np.ndarray, np.ndarray], path: Path) -> tuple[list, Trained]:
    """Stop a training after epoch two (its checkpoint kept), resume in a fresh trainer; the epochs trained
    again and the resumed training."""
    config = stage_config(backend)
    checkpoint = EpochCheckpoint(path, fingerprint(asdict(config), digits[0]))

    def stop_after_epoch_two(epoch: int, logs: dict[str, float]) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with contextlib.suppress(KeyboardInterrupt):
        make_trainer(config).fit(*digits, stop_after_epoch_two, checkpoint)
        raise AssertionError("the first training was not interrupted")
    seen: list[int] = []
    resumed = make_trainer(config)
    history = resumed.fit(*digits, lambda epoch, logs: seen.append(epoch), checkpoint)
    return seen, _trained(resumed, history)


@pytest.mark.integration
def test_training_interrupted_after_epoch_two_resumes_in_a_fresh_trainer_to_the_same_result(
    backend: str, tmp_path: Path, digits: tuple[np.ndarray, np.ndarray], uninterrupted: Trained
) -> None:
    seen, resumed = on_backend(backend, _interrupt_and_resume, backend, digits, tmp_path / "train.npz")
    assert seen == list(range(2, EPOCHS)), "only the epochs after the checkpoint are trained again"
    assert len(resumed.history) == EPOCHS
    for mine, theirs in zip(resumed.history, uninterrupted.history, strict=True):
        assert mine == pytest.approx(theirs, rel=1e-6, abs=1e-6)
    assert resumed.iterations == EPOCHS * 60
    for mine, theirs in zip(resumed.state, uninterrupted.state, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-6)


def stage_env() -> dict[str, str]:
    """This environment for a stage process: the project importable, no DVC or Keras variables (params decide)."""
    env = {key: value for key, value in os.environ.items()
           if key not in {"DVC_ROOT", "DVC_EXP_NAME"} and not key.startswith("KERAS_")}
    return {**env, "PYTHONPATH": str(REPO_ROOT)}


def checkpointed_epochs(root: Path) -> int:
    """How many epochs the stage's checkpoint under ``root`` holds; 0 while there is none.

    Reads the checkpoint's own format (an ``.npz`` with a JSON ``meta``); the stage replaces the
    file atomically, so a reader never sees a partial one.
    """
    try:
        with np.load(root / CHECKPOINT_FILE) as stored:
            return len(json.loads(str(stored["meta"]))["history"])
    except FileNotFoundError:
        return 0


@dataclass(frozen=True)
class Interrupted:
    """A stage process stopped by a signal after its first checkpoint, and what it left behind when it ended."""

    root: Path
    code: int
    stderr: str
    checkpointed: int  # epochs in the checkpoint it left
    statuses: list[str]  # of the runs in its store, oldest first
    outputs: list[str]  # the stage outputs that exist


def store_uri(root: Path) -> str:
    return f"sqlite:///{root}/mlflow.db"


def stage_runs(root: Path) -> list[mlflow.entities.Run]:
    """The training runs in the store under ``root``, oldest first."""
    client = MlflowClient(tracking_uri=store_uri(root))
    experiment = client.get_experiment_by_name(STAGE_PARAMS["train"]["experiment"])
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


@pytest.fixture(scope="module")
def interrupted_stages(
    backend: str, tmp_path_factory: pytest.TempPathFactory, digits: tuple[np.ndarray, np.ndarray], empty_store: Path
) -> dict[signal.Signals, Interrupted]:
    """``python -m pipeline.train`` on ``backend`` in two projects at once, one killed with -9 and one sent SIGTERM
    after epoch 1."""
    prepared = tmp_path_factory.mktemp("prepared")
    save_split(prepared, "train", digits[0], np.zeros(len(digits[0]), np.uint8))
    save_split(prepared, "test", digits[1], np.zeros(len(digits[1]), np.uint8))
    env = stage_env()
    started = {}
    for signum in (signal.SIGKILL, signal.SIGTERM):
        root = tmp_path_factory.mktemp(signum.name.lower())
        shutil.copytree(prepared, root / "data" / "prepared")
        shutil.copyfile(empty_store, root / "mlflow.db")
        (root / "params.yaml").write_text(yaml.safe_dump(stage_params(backend)))
        env["MLFLOW_TRACKING_URI"] = store_uri(root)
        with open(root / "stderr.txt", "w") as stderr:
            started[signum] = root, subprocess.Popen(
                [sys.executable, "-m", "pipeline.train", "--params", "params.yaml"],
                cwd=root, env=dict(env), stdout=subprocess.DEVNULL, stderr=stderr,
            )
    signalled: dict[signal.Signals, int] = {}
    try:
        deadline = time.monotonic() + STAGE_TIMEOUT_S
        waiting = dict(started)
        while waiting and time.monotonic() < deadline:
            for signum, (root, process) in list(waiting.items()):
                epochs = checkpointed_epochs(root)
                if epochs:
                    process.send_signal(signum)
                    signalled[signum] = epochs
                if epochs or process.poll() is not None:
                    del waiting[signum]
            time.sleep(POLL_S)
        for _, process in started.values():
            process.wait(timeout=60)  # reaped: a zombie's pid would still look alive
    finally:
        for _, process in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    results = {}
    for signum, (root, process) in started.items():
        stderr = (root / "stderr.txt").read_text()
        assert signum in signalled, f"stage ended (exit {process.returncode}) before a checkpoint:\n{stderr[-2000:]}"
        outputs = [str(path) for path in (MODEL_FILE, RUN_FILE, TRAIN_HISTORY_FILE) if (root / path).exists()]
        statuses = [run.info.status for run in stage_runs(root)]
        results[signum] = Interrupted(root, process.returncode, stderr, checkpointed_epochs(root), statuses, outputs)
    return results


def history_rows(root: Path) -> list[dict[str, str]]:
    with open(root / TRAIN_HISTORY_FILE, newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.mark.clones
def test_stage_killed_with_sigkill_leaves_a_running_run_and_no_model(
    interrupted_stages: dict[signal.Signals, Interrupted],
) -> None:
    killed = interrupted_stages[signal.SIGKILL]
    assert killed.code == -signal.SIGKILL
    assert 1 <= killed.checkpointed < EPOCHS, "killed in the middle of training"
    assert killed.outputs == []
    assert killed.statuses == ["RUNNING"]


@pytest.mark.clones
def test_stage_rerun_after_sigkill_fails_the_old_run_and_resumes_to_the_uninterrupted_result(
    interrupted_stages: dict[signal.Signals, Interrupted], uninterrupted: Trained,
) -> None:
    killed = interrupted_stages[signal.SIGKILL]
    assert 1 <= killed.checkpointed < EPOCHS
    rerun = subprocess.run([sys.executable, "-m", "pipeline.train", "--params", "params.yaml"], cwd=killed.root,
                           env={**stage_env(), "MLFLOW_TRACKING_URI": store_uri(killed.root)},
                           capture_output=True, text=True, timeout=STAGE_TIMEOUT_S)

    assert rerun.returncode == 0, rerun.stderr
    old, new = stage_runs(killed.root)
    assert old.info.status == "FAILED"
    assert old.data.tags["pipeline.failure"]
    assert new.info.status == "FINISHED"
    assert new.data.tags["resumed_after_epoch"] == str(killed.checkpointed)
    assert json.loads((killed.root / RUN_FILE).read_text())["run_id"] == new.info.run_id
    assert not (killed.root / CHECKPOINT_FILE).exists()

    expected = uninterrupted.history
    rows = history_rows(killed.root)
    assert [row["epoch"] for row in rows] == [str(epoch) for epoch in range(1, EPOCHS + 1)]
    for row, logs in zip(rows, expected, strict=True):
        assert {name: float(row[name]) for name in logs} == pytest.approx(logs, abs=1e-5)
    client = MlflowClient(tracking_uri=store_uri(killed.root))
    for name in expected[0]:
        logged = sorted(client.get_metric_history(new.info.run_id, name), key=lambda metric: metric.step)
        assert [metric.step for metric in logged] == list(range(1, EPOCHS + 1)), name
        assert [metric.value for metric in logged] == pytest.approx([logs[name] for logs in expected], abs=1e-5)
    saved = load_trained_vae(killed.root / MODEL_FILE).vae
    for mine, theirs in zip(saved.weights, uninterrupted.weights, strict=True):
        np.testing.assert_allclose(np.asarray(mine), theirs, rtol=1e-6, atol=1e-6)


@pytest.mark.clones
def test_stage_sent_sigterm_exits_130_with_one_line_kills_the_run_and_keeps_the_checkpoint(
    interrupted_stages: dict[signal.Signals, Interrupted],
) -> None:
    stopped = interrupted_stages[signal.SIGTERM]
    assert stopped.code == 130, stopped.stderr
    lines = [line for line in stopped.stderr.splitlines() if "interrupted" in line]
    assert lines == ["train: interrupted; no partial output was kept"], stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert stopped.statuses == ["KILLED"]
    assert stopped.outputs == []
    assert 1 <= stopped.checkpointed < EPOCHS, "the finished epochs stay resumable"
