"""Stage ``download``: fetch the dataset's four IDX files, verified against their pinned digests.

Sources are tried in order: ``$DATA_MIRROR/<dataset>/`` if set (one folder per dataset, so a
mirror is only ever asked for the files of the dataset the params name), ``$MNIST_MIRROR`` (the
former name, an alias that names MNIST's own folder and serves MNIST alone), then ``data.mirrors``
from params, or the dataset's public mirrors when that list is empty; a relative folder is taken
against the project root. Each file lands uncompressed in ``<out>/<dataset>/<name>`` only once its
SHA-256 and size match; a file already there with the right digest is kept without fetching.
"""

import argparse
import os
import sys
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path

from tqdm import tqdm

from pipeline.core.atomic_files import atomic_path
from pipeline.core.cli import run_stage, show_progress, stage_parser
from pipeline.core.errors import PipelineError
from pipeline.core.params import load_params
from pipeline.core.paths import RAW_DIR, from_project_root
from pipeline.data.datasets import DATASETS, DatasetSpec, IdxFile, Role
from pipeline.data.sources import SourceError, fetch, location, matches

MIRROR_ENV = "DATA_MIRROR"
"""A folder or URL holding one folder per dataset (``mnist/``, ``fashion_mnist/``) of its four ``.gz`` files."""
MNIST_ALIAS_ENV = "MNIST_MIRROR"
"""The former name: a folder or URL holding MNIST's own four ``.gz`` files, never tried for another dataset."""
ALIASES = {MNIST_ALIAS_ENV: "mnist"}
"""Each former variable and the one dataset it serves."""
TRIES = 3
BASE_DELAY_S = 1.0
TIMEOUT_S = 30.0


class DownloadError(PipelineError):
    """No source could supply a verified copy of a file, or the output cannot be written."""


def dataset_sources(spec: DatasetSpec, mirrors: Sequence[str], environ: Mapping[str, str],
                    root: Path | None = None) -> list[str]:
    """The sources to try, in order: ``$DATA_MIRROR/<dataset>``, ``$MNIST_MIRROR`` for MNIST, then
    ``mirrors`` or the spec's defaults.

    A folder given as a relative path (or a relative ``file:`` URL) is taken against the project
    ``root``, not the working directory, which is a deleted copy in a DVC temporary experiment.
    """
    shared = environ.get(MIRROR_ENV, "").strip()
    sources = [dataset_folder(shared, spec.name)] if shared else []
    sources += [environ[name].strip() for name, dataset in ALIASES.items()
                if dataset == spec.name and environ.get(name, "").strip()]
    sources += list(tuple(mirrors) or spec.default_mirrors)
    return list(dict.fromkeys(anchored_source(source, root) for source in sources))


def dataset_folder(mirror: str, dataset: str) -> str:
    """The folder or URL of ``dataset``'s files in a mirror of every dataset: ``<mirror>/<dataset>``."""
    if urllib.parse.urlsplit(mirror).scheme:
        return f"{mirror.rstrip('/')}/{dataset}/"
    return str(Path(mirror) / dataset)


def anchored_source(source: str, root: Path | None = None) -> str:
    """``source`` with a relative folder path made absolute under the project root; URLs unchanged."""
    parts = urllib.parse.urlsplit(source)
    if parts.scheme.lower() == "file" and not parts.netloc:
        return from_project_root(urllib.request.url2pathname(parts.path), root).as_uri()
    return source if parts.scheme else str(from_project_root(source, root))


def fetch_file(idx: IdxFile, sources: Sequence[str], target: Path, *, tries: int = TRIES,
               base_delay: float = BASE_DELAY_S, timeout: float = TIMEOUT_S, progress: bool = False,
               dataset: str = "") -> None:
    """Make ``target`` a verified copy of ``idx``, trying ``sources`` in order (``dataset`` names its dataset in
    the error).

    A file already at ``target`` is hashed and kept if it matches, removed if it does not.
    Raise ``DownloadError`` naming every source tried and why it failed.
    """
    try:
        if not matches(target, idx):
            target.unlink(missing_ok=True)
            _fetch_first(idx, sources, target, tries=tries, base_delay=base_delay, timeout=timeout,
                         progress=progress, dataset=dataset)
    except OSError as error:
        raise DownloadError(f"{target}: {error.strerror or error}") from None


def _fetch_first(idx: IdxFile, sources: Sequence[str], target: Path, *, tries: int, base_delay: float,
                 timeout: float, progress: bool, dataset: str) -> None:
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
    raise DownloadError(_failure_message(idx, failures, dataset))


def fetch_dataset(spec: DatasetSpec, sources: Sequence[str], out_dir: Path, *, tries: int = TRIES,
                  base_delay: float = BASE_DELAY_S, timeout: float = TIMEOUT_S,
                  progress: bool = False) -> dict[Role, Path]:
    """Fetch every file of ``spec`` into ``out_dir``; return each role's verified path.

    A failure leaves no empty ``out_dir`` behind: the other datasets beside it are all the raw folder holds.
    """
    paths: dict[Role, Path] = {}
    try:
        for role, idx in spec.files.items():
            paths[role] = out_dir / idx.name
            fetch_file(idx, sources, paths[role], tries=tries, base_delay=base_delay, timeout=timeout,
                       progress=progress, dataset=spec.name)
    except BaseException:
        with suppress(OSError):
            out_dir.rmdir()  # only if empty
        raise
    return paths


def _failure_message(idx: IdxFile, failures: Sequence[str], dataset: str) -> str:
    tried = "\n".join(f"  {number}. {failure}" for number, failure in enumerate(failures, 1)) or "  (none)"
    return (
        f"no source supplied a verified {idx.name} ({idx.size} bytes, sha256 {idx.sha256}); tried:\n"
        f"{tried}\n"
        f"Set {MIRROR_ENV} to a folder or URL holding {dataset or '<dataset>'}/{idx.gz_name}, or list mirrors "
        "under data.mirrors."
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
