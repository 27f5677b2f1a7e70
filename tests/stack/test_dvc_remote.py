"""A shared DVC remote on S3 (moto's server on localhost): push, pull in a second clone, experiments."""

from pathlib import Path

import pytest
import servers
import yaml
from clones import metric
from team import DVC_BUCKET, DVC_PREFIX, REMOTE, Built, Pulled, Queued, Stack, record

pytestmark = pytest.mark.stack

UP_TO_DATE = "Data and pipelines are up to date."
PULLED_OUTPUTS = ("models/vae.keras", "models/run.json", "reports/manifold.png", "reports/index.html",
                  "data/prepared/train.npz")


def cached_objects(root: Path) -> set[str]:
    """DVC's cache as keys relative to the remote's root: ``files/md5/ab/cdef...``."""
    cache = root / ".dvc" / "cache"
    return {path.relative_to(cache).as_posix() for path in cache.rglob("*") if path.is_file()
            and path.relative_to(cache).parts[0] == "files"}


def object_key(md5: str) -> str:
    """Where DVC 3 stores the object of ``md5`` (a ``.dir`` manifest keeps its suffix)."""
    return f"files/md5/{md5[:2]}/{md5[2:]}"


def remote_objects(endpoint: str) -> set[str]:
    return {key.removeprefix(f"{DVC_PREFIX}/") for key in servers.object_keys(endpoint, DVC_BUCKET, f"{DVC_PREFIX}/")}


def test_push_uploads_every_cached_output_and_commits_no_credentials(builder: Built, stack: Stack) -> None:
    remote = remote_objects(stack.s3_endpoint)
    record("objects in the DVC remote after dvc push", len(remote))
    assert f"{len(remote)} files pushed" in builder.push.stdout, builder.push.stdout
    assert remote <= cached_objects(builder.clone.root)
    lock = yaml.safe_load((builder.clone.root / "dvc.lock").read_text(encoding="utf-8"))
    for stage, output in (("train", "models/vae.keras"), ("prepare", "data/prepared"), ("download", "data/raw")):
        [entry] = [out for out in lock["stages"][stage]["outs"] if out["path"] == output]
        assert object_key(entry["md5"]) in remote, f"{output} is not in the remote"
    in_sync = builder.clone.dvc("status", "--cloud").stdout
    assert f"Cache and remote '{REMOTE}' are in sync" in in_sync, in_sync

    committed = builder.clone.git("show", "HEAD:.dvc/config")
    assert "endpointurl" in committed and servers.S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in committed
    assert builder.clone.git("ls-files", ".dvc/config.local") == ""


def test_second_clone_pulls_and_repro_does_nothing(builder: Built, second_clone: Pulled) -> None:
    assert UP_TO_DATE in second_clone.repro.stdout, second_clone.repro.stdout
    assert "Running stage" not in second_clone.repro.stdout + second_clone.repro.stderr
    assert UP_TO_DATE in second_clone.status.stdout, second_clone.status.stdout
    for name in ("reports/metrics.json", *PULLED_OUTPUTS):
        pulled, built = second_clone.clone.root / name, builder.clone.root / name
        assert pulled.read_bytes() == built.read_bytes(), f"{name} differs from the first clone's"


def test_exp_push_and_pull_share_an_experiment_with_its_outputs(
    builder: Built, second_clone: Pulled, queued: Queued, stack: Stack
) -> None:
    name = "stack-beta"
    assert queued.shown[name]["executor"]["state"] == "success", queued.status
    before = remote_objects(stack.s3_endpoint)
    builder.clone.dvc("exp", "push", "origin", name)
    after = remote_objects(stack.s3_endpoint)
    record(f"objects dvc exp push {name} added to the remote", len(after - before))
    assert after > before, "dvc exp push uploaded no new model"
    refs = builder.clone.git("ls-remote", "origin", "refs/exps/*")
    assert f"/{name}" in refs, refs

    second = second_clone.clone
    listed = second.dvc("exp", "list", "origin").stdout
    assert name in listed, listed
    second.dvc("exp", "pull", "origin", name)
    shown = second.experiments()
    assert metric(shown, name, "test_neg_elbo") == metric(queued.shown, name, "test_neg_elbo")
    second.dvc("exp", "apply", name)
    status = second.dvc("status").stdout
    assert "Data and pipelines are up to date." in status, status
    exp_lock = builder.clone.git("show", f"{_exp_ref(builder, name)}:dvc.lock")
    assert exp_lock == (second.root / "dvc.lock").read_text(encoding="utf-8")


def _exp_ref(builder: Built, name: str) -> str:
    """The git ref DVC keeps experiment ``name`` under in the first clone."""
    refs = builder.clone.git("for-each-ref", "--format=%(refname)", "refs/exps/")
    [ref] = [line for line in refs.splitlines() if line.endswith(f"/{name}")]
    return ref
