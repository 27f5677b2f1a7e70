"""params.yaml read as DVC reads it (YAML 1.2, ruamel.yaml's safe loader) everywhere, and hostile YAML refused.

DVC's own loader (``dvc.utils.serialize.parse_yaml``, what ``dvc params diff`` and ``dvc exp show`` use) is the
reference for every value; ``dvc params diff`` itself is run once on the reported cases.
"""

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO_ROOT, git

from pipeline.core.params import ParamsError, load_params
from pipeline.core.strict_yaml import MAX_BYTES, YamlError, load_yaml
from pipeline.gate.params_diff import compare_params

# Scalars whose reading differs between YAML 1.1 (PyYAML) and YAML 1.2, and their neighbours.
SCALARS = {
    "leading-zero-010": "010", "leading-zero-0123": "0123", "leading-zero-017": "017", "leading-zero-08": "08",
    "no": "no", "yes": "yes", "on": "on", "off": "off", "y": "y", "n": "n", "No": "No", "OFF": "OFF",
    "octal-0o17": "0o17", "hex-0x1F": "0x1F", "binary-0b101": "0b101", "bad-octal-0o8": "0o8",
    "inf": ".inf", "minus-inf": "-.inf", "nan": ".nan", "tilde": "~", "Null": "Null", "NULL": "NULL", "empty": "",
    "underscores-1_000": "1_000", "underscores-1_000.5": "1_000.5", "sexagesimal-1:30": "1:30",
    "sexagesimal-float-1:30.5": "1:30.5", "date": "2024-01-01", "datetime": "2024-01-01 12:00:00",
    "exponent-1e-5": "1e-5", "exponent-1E5": "1E5", "exponent-1e-05": "1e-05", "True": "True", "TRUE": "TRUE",
    "plus-5": "+5", "minus-0": "-0", "dot-float": "0.", "quoted-010": "'010'", "quoted-no": '"no"',
    "binary-tag": "!!binary aGk=", "set": "!!set {a, b}", "omap": "!!omap [a: 1]", "str-tag": "!!str 010",
}


def dvc_reads(text: str) -> object:
    from dvc.utils.serialize import parse_yaml

    return parse_yaml(text, "params.yaml")


@pytest.mark.parametrize("scalar", SCALARS.values(), ids=SCALARS.keys())
def test_every_scalar_reads_as_dvc_reads_it(scalar: str) -> None:
    document = f"train:\n  value: {scalar}\n"
    assert repr(load_yaml(document)) == repr(dvc_reads(document))  # repr: NaN equals NaN, dates keep their type


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("train:\n  epochs: 010\n", ("train", "epochs", 10)),
        ("data:\n  seed: 0123\n", ("data", "seed", 123)),
        ("train:\n  experiment: no\n", ("train", "experiment", "no")),
        ("train:\n  experiment: off\n", ("train", "experiment", "off")),
        ("train:\n  experiment: 1:30\n", ("train", "experiment", "1:30")),
        ("train:\n  seed: 0o17\n", ("train", "seed", 15)),
        ("train:\n  seed: 0x1F\n", ("train", "seed", 31)),
        ("evaluate:\n  seed: 1_000\n", ("evaluate", "seed", 1000)),
        ("report:\n  seed: 017\n", ("report", "seed", 17)),
    ],
    ids=["epochs-010", "seed-0123", "experiment-no", "experiment-off", "experiment-1:30", "seed-0o17", "seed-0x1F",
         "seed-1_000", "seed-017"],
)
def test_params_take_the_value_dvc_shows(tmp_path: Path, text: str, expected: tuple[str, str, object]) -> None:
    (tmp_path / "params.yaml").write_text(text)
    section, key, value = expected
    assert getattr(getattr(load_params(tmp_path / "params.yaml"), section), key) == value
    assert dvc_reads(text)[section][key] == value


@pytest.mark.parametrize(
    ("text", "key", "hint"),
    [
        ("model:\n  conditional: yes\n", "model.conditional", "takes yes as text: write true or false"),
        ("model:\n  conditional: off\n", "model.conditional", "takes off as text: write true or false"),
        ("train:\n  epochs: 1:30\n", "train.epochs", "takes 1:30 as text, not YAML 1.1's base-60 number"),
        ("train:\n  experiment: 2024-01-01\n", "train.experiment", "quote it to mean text"),
        ("train:\n  experiment: 010\n", "train.experiment", r"\(got 10\); quote the value to mean text"),
        ("train:\n  epochs: '010'\n", "train.epochs", r"valid integer \(got '010'\)"),  # what `-S epochs=010` writes
    ],
    ids=["bool-yes", "bool-off", "int-sexagesimal", "text-date", "text-leading-zero", "int-quoted"],
)
def test_a_value_yaml_12_reads_otherwise_than_meant_is_refused_naming_the_key(
        tmp_path: Path, text: str, key: str, hint: str) -> None:
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamsError, match=rf"(?m)^  {key}: .*{hint}"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.clones  # git and dvc in a project
def test_dvc_params_diff_and_the_gate_show_the_same_values(tmp_path: Path) -> None:
    """The reported case, through ``dvc params diff`` itself: DVC said 10, 123 and ``no`` where the pipeline
    read 8, 83 and ``False``."""
    def run(*command: str) -> str:
        return subprocess.run(command, cwd=tmp_path, check=True, capture_output=True, text=True, timeout=600).stdout

    git(tmp_path, "init", "-q")
    run(sys.executable, "-m", "dvc", "init", "-q")
    (tmp_path / "params.yaml").write_text("train:\n  epochs: 5\n  experiment: vae\ndata:\n  seed: 42\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "baseline")
    (tmp_path / "params.yaml").write_text("train:\n  epochs: 010\n  experiment: no\ndata:\n  seed: 0123\n")
    shown = json.loads(run(sys.executable, "-m", "dvc", "params", "diff", "--json"))["params.yaml"]
    assert {key: change["new"] for key, change in shown.items()} == {
        "train.epochs": 10, "train.experiment": "no", "data.seed": 123}
    gate = compare_params("HEAD", tmp_path / "params.yaml", None).changed
    assert {key: new for key, (_, new) in gate.items()} == {key: change["new"] for key, change in shown.items()}
    params = load_params(tmp_path / "params.yaml")
    assert (params.train.epochs, params.train.experiment, params.data.seed) == (10, "no", 123)


def test_the_gate_sees_no_change_where_only_the_spelling_differs(tmp_path: Path) -> None:
    (tmp_path / "old.yaml").write_text("train:\n  epochs: 10\n  experiment: 'no'\n  seed: 0x1F\n")
    (tmp_path / "params.yaml").write_text("train:\n  epochs: 010\n  experiment: no\n  seed: 31\n")
    diff = compare_params(str(tmp_path / "old.json"), tmp_path / "params.yaml", tmp_path / "old.yaml")
    assert diff.not_compared is None and diff.changed == {}


# --- hostile YAML -------------------------------------------------------------------------------------------

def billion_laughs(levels: int) -> str:
    """The classic nested-alias file: nine strings, then ``levels - 1`` lists of nine aliases to the one before,
    the last used as a param: 9 ** levels strings once expanded, from about 0.3 KB per level."""
    lines = ["# billion laughs", "laughs:", '  - &lol0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"  - &lol{level} [{', '.join([f'*lol{level - 1}'] * 9)}]" for level in range(1, levels)]
    return "\n".join([*lines, "train:", f"  experiment: *lol{levels - 1}", ""])


def merge_key_bomb(levels: int) -> str:
    """Merge keys (``<<``) that each copy the mapping before twice: 2 ** levels entries to build."""
    lines = ["bomb:", "  - &m0 {x: 1}"]
    lines += [f"  - &m{level} {{<<: [*m{level - 1}, *m{level - 1}], k{level}: 1}}" for level in range(1, levels)]
    return "\n".join([*lines, "train:", f"  experiment: *m{levels - 1}", ""])


HOSTILE = {
    "billion-laughs-9": (billion_laughs(9), "more than 10000 values once its aliases are expanded"),
    "billion-laughs-10": (billion_laughs(10), "more than 10000 values once its aliases are expanded"),
    "merge-keys": (merge_key_bomb(30), "more than 10000 values once its aliases are expanded"),
    "recursive-alias": ("train: &loop\n  experiment: [*loop]\n", "recursive structure"),
    "deep-nesting": ("train:\n  experiment: " + "[" * 20_000 + "]" * 20_000 + "\n", "nested deeper than 32 levels"),
    "deep-nesting-with-values": ("train:\n  experiment: " + "[[a, " * 5000 + "]]" * 5000 + "\n",
                                 "nested deeper than 32 levels"),
    "oversized-file": ("train:\n  experiment: " + "x" * MAX_BYTES + "\n", f"larger than {MAX_BYTES} bytes"),
    "huge-scalar-in-error": ("train:\n  epochs: " + "9" * 60_000 + "x\n", "train.epochs: Input should be"),
    "huge-key-in-error": ("train:\n  ? " + "k" * 60_000 + "\n  : 1\n", "unknown key"),
    "not-utf-8": ("train:\n  experiment: caf\xe9\n", "not UTF-8 text"),
}
LIMITS = {resource.RLIMIT_AS: 1 << 30, resource.RLIMIT_CPU: 60}
"""Far more than a refusal needs; the 2.4 KB file used to take 2.1 GB and 43 s."""


def run_limited(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        for kind, value in LIMITS.items():
            resource.setrlimit(kind, (value, value))

    return subprocess.run([sys.executable, "-m", "pipeline", *command], cwd=cwd, capture_output=True, text=True,
                          timeout=300, preexec_fn=limit, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)})


def write_hostile(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("latin-1") if "\xe9" in text else text.encode("utf-8"))
    return path


@pytest.mark.parametrize(("text", "reason"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_params_are_refused_by_train_in_one_short_line(tmp_path: Path, text: str, reason: str) -> None:
    write_hostile(tmp_path / "params.yaml", text)
    done = run_limited(["train", "--params", "params.yaml"], tmp_path)
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr.startswith("train: error: params.yaml: ") and reason in done.stderr, done.stderr[:2000]
    assert len(done.stderr) < 600 and done.stdout == "", done.stderr[:2000]


@pytest.mark.parametrize(("text", "reason"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_params_are_refused_by_the_gate_in_one_short_line(tmp_path: Path, text: str, reason: str) -> None:
    write_hostile(tmp_path / "params.yaml", text)
    (tmp_path / "metrics.json").write_text('{"test_neg_elbo": 150.0}')
    done = run_limited(["check", "--params", "params.yaml", "--metrics", "metrics.json", "--baseline",
                        "metrics.json"], tmp_path)
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr.startswith("check: error: params.yaml: ") and reason in done.stderr, done.stderr[:2000]
    assert len(done.stderr) < 600 and done.stdout == "", done.stderr[:2000]


@pytest.mark.parametrize("name", ["billion-laughs-10", "merge-keys", "deep-nesting", "oversized-file"])
def test_hostile_baseline_params_are_a_short_note_in_the_gate(tmp_path: Path, name: str) -> None:
    write_hostile(tmp_path / "old.yaml", HOSTILE[name][0])
    (tmp_path / "params.yaml").write_text("train:\n  epochs: 5\n")
    (tmp_path / "metrics.json").write_text('{"test_neg_elbo": 150.0}')
    done = run_limited(["check", "--params", "params.yaml", "--metrics", "metrics.json", "--baseline",
                        "metrics.json", "--baseline-params", "old.yaml"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    note = next(line for line in done.stdout.splitlines() if line.startswith("**Params:**"))
    assert note.startswith("**Params:** not compared: old.yaml: refused: ") and len(note) < 300, note


@pytest.mark.parametrize(("text", "reason"), [(HOSTILE[name][0], HOSTILE[name][1]) for name in
                                              ("billion-laughs-10", "merge-keys", "recursive-alias", "deep-nesting")],
                         ids=["billion-laughs-10", "merge-keys", "recursive-alias", "deep-nesting"])
def test_hostile_yaml_is_refused_before_anything_is_built(text: str, reason: str) -> None:
    with pytest.raises(YamlError, match=reason) as raised:
        load_yaml(text)
    assert len(str(raised.value)) < 200


def test_anchors_and_merge_keys_within_the_limits_still_work() -> None:
    text = ("common: &seed {seed: 7}\n"
            "train: {<<: *seed, epochs: 3}\nevaluate: {<<: *seed}\nreport:\n  grid_range: &range [-2.0, 2.0]\n")
    assert load_yaml(text)["train"] == {"seed": 7, "epochs": 3}
    assert repr(load_yaml(text)) == repr(dvc_reads(text))
