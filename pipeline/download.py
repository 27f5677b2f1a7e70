"""Stage ``download``: fetch the dataset's four IDX files, verified against their pinned digests.

Sources are tried in order: ``$MNIST_MIRROR`` if set, then ``data.mirrors`` from params, or
the dataset's public mirrors when that list is empty; a relative folder is taken against the
project root. Each file lands uncompressed in
``<out>/<dataset>/<name>`` only once its SHA-256 and size match; a file already there with
the right digest is kept without fetching.
"""

import argparse
import os
import sys
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from tqdm import tqdm

from pipeline.core.atomic_files import atomic_path
from pipeline.core.cli import run_stage, show_progress, stage_parser
from pipeline.core.errors import PipelineError
from pipeline.core.params import load_params
from pipeline.core.paths import RAW_DIR, from_project_root
from pipeline.data.datasets import DATASETS, DatasetSpec, IdxFile, Role
from pipeline.data.sources import SourceError, fetch, location, matches

MIRROR_ENV = "MNIST_MIRROR"
TRIES = 3
BASE_DELAY_S = 1.0
TIMEOUT_S = 30.0


class DownloadError(PipelineError):
    """No source could supply a verified copy of a file, or the output cannot be written."""


def dataset_sources(spec: DatasetSpec, mirrors: Sequence[str], environ: Mapping[str, str],
                    root: Path | None = None) -> list[str]:
    """The sources to try, in order: ``$MNIST_MIRROR``, then ``mirrors`` or the spec's defaults.

    A folder given as a relative path (or a relative ``file:`` URL) is taken against the project
    ``root``, not the working directory, which is a deleted copy in a DVC temporary experiment.
    """
    override = environ.get(MIRROR_ENV, "").strip()
    configured = tuple(mirrors) or spec.default_mirrors
    sources = ([override] if override else []) + list(configured)
    return list(dict.fromkeys(anchored_source(source, root) for source in sources))


def anchored_source(source: str, root: Path | None = None) -> str:
    """``source`` with a relative folder path made absolute under the project root; URLs unchanged."""
    parts = urllib.parse.urlsplit(source)
    if parts.scheme.lower() == "file" and not parts.netloc:
        return from_project_root(urllib.request.url2pathname(parts.path), root).as_uri()
    return source if parts.scheme else str(from_project_root(source, root))


def fetch_file(idx: IdxFile, sources: Sequence[str], target: Path, *, tries: int = TRIES,
               base_delay: float = BASE_DELAY_S, timeout: float = TIMEOUT_S, progress: bool = False) -> None:
    """Make ``target`` a verified copy of ``idx``, trying ``sources`` in order.

    A file already at ``target`` is hashed and kept if it matches, removed if it does not.
    Raise ``DownloadError`` naming every source tried and why it failed.
    """
    try:
        if not matches(target, idx):
            target.unlink(missing_ok=True)
            _fetch_first(idx, sources, target, tries=tries, base_delay=base_delay, timeout=timeout,
                         progress=progress)
    except OSError as error:
        raise DownloadError(f"{target}: {error.strerror or error}") from None


def _fetch_first(idx: IdxFile, sources: Sequence[str], target: Path, *, tries: int, base_delay: float,
                 timeout: float, progress: bool) -> None:
    failures: list[str] = []
    with tqdm(total=idx.size, desc=idx.name, unit="B", unit_scale=True, unit_divisor=1024,
              disable=not progress, file=sys.stderr) as bar:
        for source in sources:
            try:
                with atomic_path(target) as temporary:
                    fetch(source, idx, temporary, tries=tries, base_delay=base_delay, timeout=timeout,
                                progress=lambda done: bar.update(done - bar.n))
                return
            except SourceError as error:
                failures.append(f"{location(source, idx)}: {error}")
            if progress:
                bar.write(f"{failures[-1]}; trying the next source", file=sys.stderr)
    raise DownloadError(_failure_message(idx, failures))


def fetch_dataset(spec: DatasetSpec, sources: Sequence[str], out_dir: Path, *, tries: int = TRIES,
                  base_delay: float = BASE_DELAY_S, timeout: float = TIMEOUT_S,
                  progress: bool = False) -> dict[Role, Path]:
    """Fetch every file of ``spec`` into ``out_dir``; return each role's verified path."""
    paths: dict[Role, Path] = {}
    for role, idx in spec.files.items():
        paths[role] = out_dir / idx.name
        fetch_file(idx, sources, paths[role], tries=tries, base_delay=base_delay, timeout=timeout,
                   progress=progress)
    return paths


def _failure_message(idx: IdxFile, failures: Sequence[str]) -> str:
    tried = "\n".join(f"  {number}. {failure}" for number, failure in enumerate(failures, 1)) or "  (none)"
    return (
        f"no source supplied a verified {idx.name} ({idx.size} bytes, sha256 {idx.sha256}); tried:\n"
        f"{tried}\n"
        f"Set {MIRROR_ENV} to a folder or URL holding {idx.gz_name}, or list mirrors under data.mirrors."
    )


def _run(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    spec = DATASETS[params.data.dataset]
    sources = dataset_sources(spec, params.data.mirrors, os.environ)
    paths = fetch_dataset(spec, sources, args.out / spec.name, progress=show_progress(os.environ))
    print(f"download: {spec.name}: {len(paths)} files verified by SHA-256 in {args.out / spec.name}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline download [options]``: parse ``argv``, run, return the exit code (0, 1, or 130)."""
    parser = stage_parser("download", "Fetch the dataset's IDX files and verify their SHA-256.")
    parser.add_argument("--out", type=Path, default=RAW_DIR, help=f"output folder (default: {RAW_DIR})")
    return run_stage("download", _run, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
