"""The run comparison: real MLflow runs in a temporary SQLite store, reduced, sorted and written out."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from pipeline.compare import main, runs_table
from pipeline.tracking.run_search import search_runs

EXPERIMENT = "vae-compare-test"

# Creating an MLflow SQLite schema and importing mlflow in a fresh interpreter take seconds each.
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One store (creating its schema takes seconds) with four runs, the best VAE run oldest.

    Started in this order: beta 0.1 (test_neg_elbo 140), a ``dvc exp`` run with beta 1.0 (150),
    a failed run with beta 0.5 that never reached evaluation, then a conditional VAE run with beta 0.1
    whose −log p(x | y) (130) is lower than every VAE's −log p(x) but must not rank among them.
    """
    root = tmp_path_factory.mktemp("store")
    (root / "params.yaml").write_text(f"train:\n  experiment: {EXPERIMENT}\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
        patch.chdir(root)
        mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
        experiment_id = mlflow.create_experiment(EXPERIMENT)
        runs = [("calm-owl-1", "0.1", 140.0, {"model.kind": "vae"}),
                ("exp-beta-1", "1.0", 150.0, {"dvc.experiment": "exp-beta-1"}),  # before the tag existed: a VAE
                ("crashed-2", "0.5", None, {"model.kind": "vae"}), ("cvae-1", "0.1", 130.0, {"model.kind": "cvae"})]
        for name, beta, neg_elbo, tags in runs:
            with mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags):
                mlflow.log_params({"train.beta": beta, "train.epochs": 5})
                for epoch, loss in enumerate((180.0, 160.0), start=1):
                    mlflow.log_metric("loss", loss + float(beta), step=epoch)
                if neg_elbo is None:
                    mlflow.end_run("FAILED")
                else:
                    mlflow.log_metric("test_neg_elbo", neg_elbo)
        yield root


COLUMNS = ["run", "run_id", "status", "kind", "start_time", "train.beta", "test_neg_elbo", "loss"]


def test_table_groups_runs_by_model_kind_sorts_each_by_test_neg_elbo_and_shows_only_differing_params(
        store: Path) -> None:
    table = runs_table(search_runs(EXPERIMENT))
    assert list(table.columns) == COLUMNS
    assert table["run"].tolist() == ["calm-owl-1", "exp-beta-1", "crashed-2", "cvae-1"]
    assert table["kind"].tolist() == ["vae", "vae", "vae", "cvae"]
    assert table["train.beta"].tolist() == ["0.1", "1.0", "0.5", "0.1"]
    assert table["status"].tolist() == ["FINISHED", "FINISHED", "FAILED", "FINISHED"]
    assert table["loss"].tolist() == [160.1, 161.0, 160.5, 160.1]
    assert table["test_neg_elbo"].iloc[:2].tolist() == [140.0, 150.0] and pd.isna(table["test_neg_elbo"].iloc[2])
    assert table["run_id"].str.len().eq(8).all()


def test_all_params_shows_params_that_agree_too(store: Path) -> None:
    table = runs_table(search_runs(EXPERIMENT), all_params=True)
    assert [column for column in table.columns if column.startswith("train.")] == ["train.beta", "train.epochs"]
    assert table["train.epochs"].tolist() == ["5", "5", "5", "5"]


def test_main_prints_one_ranking_per_model_kind_under_its_likelihood_and_writes_csv_and_markdown(
        store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv, markdown = store / "out" / "runs.csv", store / "out" / "runs.md"
    assert main(["--csv", str(csv), "--markdown", str(markdown)]) == 0
    printed = capsys.readouterr().out
    note, vae, cvae = printed.split("\n\n")[0], printed.split("\n\n")[1:3], printed.split("\n\n")[3:5]
    assert "-log p(x)" in note and "-log p(x|y)" in note and "ranked on its own" in note
    assert vae[0] == "unconditional VAE (kind vae): test metrics of -log p(x), nats per image"
    assert cvae[0] == "conditional VAE (kind cvae): test metrics of -log p(x|y), nats per image"
    for (_, rows), names in ((vae, ["calm-owl-1", "exp-beta-1", "crashed-2"]), (cvae, ["cvae-1"])):
        assert rows.splitlines()[0].split() == COLUMNS
        assert [line.split()[0] for line in rows.splitlines()[1:]] == names
    written = pd.read_csv(csv)
    assert written["run"].tolist() == ["calm-owl-1", "exp-beta-1", "crashed-2", "cvae-1"]
    assert written["kind"].tolist() == ["vae", "vae", "vae", "cvae"]
    assert written["train.beta"].tolist() == [0.1, 1.0, 0.5, 0.1]
    text = markdown.read_text()
    assert "### unconditional VAE (kind vae)" in text and "### conditional VAE (kind cvae)" in text
    assert text.index("calm-owl-1") < text.index("### conditional VAE") < text.index("cvae-1")
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert [cell.strip() for cell in lines[0].strip("|").split("|")][5:7] == ["train.beta", "test_neg_elbo"]
    assert [line.split("|")[1].strip() for line in lines if not line.startswith(("| run ", "|:", "|-"))] == [
        "calm-owl-1", "exp-beta-1", "crashed-2", "cvae-1"]


def test_runs_of_one_kind_get_its_heading_and_no_note() -> None:
    from pipeline.compare import grouped_text

    table = pd.DataFrame({"run": ["a", "b"], "kind": ["cvae", "cvae"], "test_neg_elbo": [1.0, 2.0]})
    text = grouped_text(table, lambda group: group.to_string(index=False))
    assert text.startswith("conditional VAE (kind cvae): test metrics of -log p(x|y)")
    assert "note:" not in text


def test_unknown_experiment_is_one_clear_error(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--experiment", "no-such-experiment"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"compare: error: no MLflow experiment 'no-such-experiment' at sqlite:///{store}/mlflow.db")


def test_compare_does_not_import_tensorflow_or_keras() -> None:
    probe = ("import sys, pipeline.compare; "
             "print(sorted({'tensorflow', 'keras'} & {name.split('.')[0] for name in sys.modules}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=600)
    assert done.stdout.strip() == "[]"
