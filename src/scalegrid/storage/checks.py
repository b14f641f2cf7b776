"""Checks of a results root before anything is read or written: each failure is one `UserError` line."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from scalegrid.errors import UserError
from scalegrid.storage.layout import ResultsLayout
from scalegrid.storage.local import can_create_in
from scalegrid.storage.uri import first_line


def check_reachable(results: ResultsLayout) -> None:
    """On an object store, one request before anything runs: credentials, endpoint, bucket."""
    if not results.object_store:
        return
    from pyarrow.fs import FileType

    bucket = results.root.split("/", 1)[0]
    try:
        if results.fs.get_file_info(bucket).type != FileType.Directory:
            raise UserError(f"results: {results}: the bucket {bucket} does not exist (or these credentials cannot see it); create it first")
        kind = results.info().type
    except OSError as err:
        raise UserError(
            f"results: {results}: cannot reach the store ({first_line(err)}); check the endpoint, the bucket and the "
            "credentials in the environment"
        ) from None
    if kind == FileType.File:
        raise UserError(f"results: {results} is a file, not a directory; choose another path with --results")


def check_writable(results: ResultsLayout) -> None:
    """Refuse, before anything is written, a results root that is a file or cannot be written."""
    path = results.local_path
    if path is None:
        check_reachable(results)
        return
    if path.exists() and not path.is_dir():
        raise UserError(f"results: {path} is a file, not a directory; choose another path with --results")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not can_create_in(existing):
        raise UserError(f"results: {existing} is not writable; choose a writable directory with --results")


def check_readable(results: ResultsLayout) -> None:
    """A results root that exists and can be listed."""
    try:
        found = results.is_dir()
    except OSError as err:
        raise UserError(f"{results}: cannot read the results ({' '.join(str(err).split())[:200]})") from None
    if not found:
        raise UserError(f"{results}: not a results directory; pass the `results:` directory of a sweep")


@contextlib.contextmanager
def materialised(results: ResultsLayout, *dirs: str) -> Iterator[Path]:
    """A local directory holding `dirs` of the store: the store itself when it is mounted here,
    else a temporary copy (the Parquet files are small; a report or a notebook reads them)."""
    if results.local_path is not None:
        yield results.local_path
        return
    with tempfile.TemporaryDirectory(prefix="scalegrid-results-") as tmp:
        for d in dirs:
            for name in results.list(d):
                results.download((d, name), Path(tmp, d, name))
        yield Path(tmp)
