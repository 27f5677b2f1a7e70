"""The team stack, started once per session: PostgreSQL, moto's S3 server, ``mlflow server``, and the
clones of ``team``. Every server stops at the end of the session (and by itself, see ``servers``)."""

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import servers
from team import (
    DVC_BUCKET,
    FINDINGS,
    MLFLOW_BUCKET,
    MLFLOW_PREFIX,
    Built,
    Pulled,
    Queued,
    Stack,
    build,
    member_environment,
    pull_second,
    record,
    run_queue,
)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """PostgreSQL, moto's S3 server with two buckets, and ``mlflow server`` on both."""
    missing = servers.postgres_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    folder = tmp_path_factory.mktemp("stack")
    started: list[servers.Server] = []
    begin = time.monotonic()
    try:
        postgres, postgres_uri = servers.start_postgres()
        started.append(postgres)
        s3, endpoint = servers.start_s3(folder, (DVC_BUCKET, MLFLOW_BUCKET))
        started.append(s3)
        mlflow, tracking_uri = servers.start_mlflow(folder, postgres_uri, f"s3://{MLFLOW_BUCKET}/{MLFLOW_PREFIX}",
                                                    endpoint)
        started.append(mlflow)
        record("PostgreSQL + S3 + mlflow server healthy after s", f"{time.monotonic() - begin:.1f}")
        yield Stack(postgres_uri, endpoint, tracking_uri)
    except servers.ServerError as error:
        pytest.fail(str(error))
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture(scope="session")
def builder(stack: Stack, mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(stack, member_environment(stack.tracking_uri, mnist_dir), tmp_path_factory.mktemp("team"))


@pytest.fixture(scope="session")
def second_clone(builder: Built, tmp_path_factory: pytest.TempPathFactory) -> Pulled:
    return pull_second(builder, tmp_path_factory.mktemp("team"))


@pytest.fixture(scope="session")
def queued(builder: Built) -> Iterator[Queued]:
    try:
        yield run_queue(builder.clone)
    finally:
        builder.clone.dvc("queue", "stop", "--kill", check=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What the stack tests saw: timings, DVC's output, counts of runs and objects."""
    if not FINDINGS:
        return
    terminalreporter.section("team stack")
    for what, value in FINDINGS.items():
        separator = "\n    " if "\n" in value else " "
        terminalreporter.write_line(f"{what}:{separator}{value.replace(chr(10), chr(10) + '    ')}")
