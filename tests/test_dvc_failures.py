"""What DVC does to the workspace around a stage that fails, and what the pipeline does about it.

Real `dvc exp run` and `dvc repro` in temporary git repositories: a bad param after DVC deleted the
train stage's outputs, a dataset that cannot be fetched offline, a forced download into a symlinked
raw folder. DVC's own behaviour is the point, so nothing here is simulated.
"""

import hashlib
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from clones import Clone, clone_environment, clone_repository
from helpers import REPO_ROOT, git, synthetic_digits

from pipeline.core.dvc_outputs import restore_hint
from pipeline.data.datasets import DATASETS
from pipeline.data.splits import save_split


@pytest.mark.parametrize(("stage", "command"), [
    ("download", ""),  # persist: true, DVC deletes nothing
    ("prepare", "git checkout HEAD -- reports/data_stats.json && dvc checkout prepare"),
    ("train", "git checkout HEAD -- reports/train_history.csv && dvc checkout train"),
    ("evaluate", "git checkout HEAD -- reports/metrics.json reports/model.json reports/per_class.csv"),
    ("report", "dvc checkout report"),
])
def test_a_stage_run_by_dvc_names_the_command_that_restores_what_dvc_deleted(stage: str, command: str) -> None:
    hint = restore_hint(stage, REPO_ROOT, {"DVC_STAGE": stage})
    assert hint == (f"DVC deleted this stage's outputs before running it and does not put them back; to restore "
                    f"the last committed ones: {command}" if command else "")


def test_no_restore_hint_by_hand_for_another_stage_in_a_temporary_experiment_or_before_a_first_run(
        tmp_path: Path) -> None:
    assert restore_hint("train", REPO_ROOT, {}) == ""
    assert restore_hint("train", REPO_ROOT, {"DVC_STAGE": "evaluate"}) == ""
    copy = REPO_ROOT / ".dvc" / "tmp" / "exps" / "tmpabc123"
    assert restore_hint("train", copy, {"DVC_STAGE": "train"}) == ""
    shutil.copyfile(REPO_ROOT / "dvc.yaml", tmp_path / "dvc.yaml")  # no dvc.lock: nothing was ever recorded
    assert restore_hint("train", tmp_path, {"DVC_STAGE": "train"}) == ""


def _dvc(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``dvc ARGS`` in ``root`` (a clone or a project made here, which imports the pipeline from this repository)."""
    return Clone(root, clone_environment(PYTHONPATH=str(REPO_ROOT), CI="1", **(env or {}))).dvc(*args, check=False)


def _digests(root: Path, *paths: str) -> dict[str, str | None]:
    return {path: hashlib.sha256((root / path).read_bytes()).hexdigest() if (root / path).is_file() else None
            for path in paths}


TRAIN_STAGE = {
    "cmd": "python -m pipeline.train --params params.yaml --prepared data/prepared --model models/vae.keras "
           "--run models/run.json --history reports/train_history.csv --checkpoints checkpoints",
    "deps": ["data/prepared"],
    "params": ["train"],
    "outs": ["models/vae.keras", "models/run.json"],
    "plots": [{"reports/train_history.csv": {"cache": False}}],
}


@pytest.mark.clones  # a real training under dvc repro, then dvc exp run
def test_a_failed_experiment_says_the_one_command_that_restores_the_committed_outputs(tmp_path: Path) -> None:
    """The reported case: after `dvc exp run -S <bad param>`, models/ was empty and the git-tracked
    reports/train_history.csv deleted, with nothing saying how to get them back."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q")
    save_split(root / "data" / "prepared", "train", *synthetic_digits(200, seed=1))
    save_split(root / "data" / "prepared", "test", *synthetic_digits(50, seed=2))
    (root / "params.yaml").write_text(yaml.safe_dump({
        "model": {"intermediate_dim": 16}, "train": {"epochs": 1, "experiment": "failed-exp"}}))
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": TRAIN_STAGE}}, sort_keys=False))
    (root / ".gitignore").write_text("/mlflow.db*\n/mlartifacts/\n/checkpoints/\n")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db"}
    assert _dvc(root, "init", "-q").returncode == 0
    assert _dvc(root, "add", "-q", "data/prepared").returncode == 0
    done = _dvc(root, "repro", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    git(root, "add", "-A")
    git(root, "commit", "-qm", "trained")
    outputs = ("models/vae.keras", "models/run.json", "reports/train_history.csv")
    committed = _digests(root, *outputs)

    done = _dvc(root, "exp", "run", "-S", "train.epochs=-1", env=env)
    assert done.returncode != 0
    lines = (done.stdout + done.stderr).splitlines()
    assert "train: error: params.yaml: invalid params:" in lines
    [hint] = [line for line in lines if line.startswith("train: DVC deleted")]
    command = hint.split("restore the last committed ones: ")[1]
    assert command == "git checkout HEAD -- reports/train_history.csv && dvc checkout train"
    assert set(_digests(root, *outputs).values()) == {None}, "DVC deleted the outputs before the params check"

    restored = subprocess.run(command.replace("dvc ", f"{sys.executable} -m dvc ", 1), shell=True, cwd=root,
                              capture_output=True, text=True, timeout=300, check=False)
    assert restored.returncode == 0, restored.stderr
    assert _digests(root, *outputs) == committed
    assert git(root, "status", "--porcelain") == " M params.yaml\n", "only the param the user set is left"


def _mirror(tmp_path: Path, mnist: Path) -> Path:
    """A DATA_MIRROR folder that holds MNIST only, and an empty folder to stand for the offline public mirrors."""
    mirror = tmp_path / "mirror"
    (mirror / "empty").mkdir(parents=True)
    (mirror / "mnist").symlink_to(mnist)
    return mirror


def _raw_digests(raw: Path, dataset: str) -> dict[str, str]:
    return {idx.name: hashlib.sha256((raw / dataset / idx.name).read_bytes()).hexdigest()
            for idx in DATASETS[dataset].files.values()}


@pytest.mark.clones  # clones the repository, downloads the real MNIST files from a local mirror
def test_switching_to_a_dataset_that_cannot_be_fetched_keeps_the_other_datasets_files(
        tmp_path: Path, mnist_dir: Path) -> None:
    """The reported case: `dvc exp run -S data.dataset=fashion_mnist` offline deleted data/raw/mnist before it
    failed, and the MNIST mirror was asked for Fashion-MNIST's files."""
    clone, mirror = clone_repository(tmp_path / "clone", with_changes=False), _mirror(tmp_path, mnist_dir)
    done = _dvc(clone, "repro", "download", env={"MNIST_MIRROR": str(mnist_dir)})  # the former name still works
    assert done.returncode == 0, done.stdout + done.stderr
    git(clone, "commit", "--allow-empty", "-qam", "downloaded")  # empty when HEAD's lock is fresh
    before = _raw_digests(clone / "data" / "raw", "mnist")

    done = _dvc(clone, "exp", "run", "-S", "data.dataset=fashion_mnist", "-S", f"data.mirrors=['{mirror}/empty']",
                env={"DATA_MIRROR": str(mirror), "MNIST_MIRROR": str(mnist_dir)})
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert f"1. {mirror}/fashion_mnist/train-images-idx3-ubyte.gz: cannot open" in output
    assert f"2. {mirror}/empty/train-images-idx3-ubyte.gz: cannot open" in output
    assert "3. " not in output and str(mnist_dir) not in output, "a MNIST folder was asked for Fashion-MNIST"
    assert _raw_digests(clone / "data" / "raw", "mnist") == before
    assert sorted(path.name for path in (clone / "data" / "raw").iterdir()) == ["mnist"], "no empty folder left"

    git(clone, "checkout", "-q", "params.yaml")
    done = _dvc(clone, "repro", "download")
    assert "Stage 'download' didn't change, skipping" in done.stdout, done.stdout + done.stderr


@pytest.mark.clones
def test_a_forced_download_into_a_symlinked_raw_folder_keeps_the_folder_and_its_mode(
        tmp_path: Path, mnist_dir: Path) -> None:
    """The reported case: with data/raw a symlink to a folder elsewhere, `dvc repro --force download` left that
    folder world-writable (0777): DVC's removal of an output follows the link to chmod it
    (treeverse/dvc-objects#377). data/raw is `persist: true`, so DVC no longer removes it before the stage."""
    clone = clone_repository(tmp_path / "clone", with_changes=False)
    elsewhere = tmp_path / "elsewhere" / "raw"
    elsewhere.mkdir(parents=True, mode=0o755)
    elsewhere.chmod(0o755)
    (clone / "data").mkdir()
    (clone / "data" / "raw").symlink_to(elsewhere, target_is_directory=True)
    mirror = _mirror(tmp_path, mnist_dir)
    for force in ([], ["--force"]):
        done = _dvc(clone, "repro", *force, "download", env={"DATA_MIRROR": str(mirror)})
        assert done.returncode == 0, done.stdout + done.stderr
        assert (clone / "data" / "raw").is_symlink()
        assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o755
        assert sorted(path.name for path in (elsewhere / "mnist").iterdir()) == sorted(
            idx.name for idx in DATASETS["mnist"].files.values())
    shutil.rmtree(elsewhere)
