"""Checks of a results root before anything is read or written: each failure is one `UserError` line."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from scalegrid.errors import UserError
from scalegrid.storage.layout import LONGEST_UNDER_ROOT, ResultsLayout
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
    """Refuse, before anything is written, a results root that is a file, a dangling symlink, too
    long a path for the files under it, or cannot be written."""
    path = results.local_path
    if path is None:
        check_reachable(results)
        return
    if path == Path(path.anchor):
        raise UserError(f"results: {path} is the filesystem's root; give a directory of its own for the sweep's results")
    existing = path
    while not _exists(existing):
        existing = existing.parent
    _check_path_lengths(path, existing)
    if path.exists() and not path.is_dir():
        raise UserError(f"results: {path} is a file, not a directory; choose another path with --results")
    for link in (p for p in (path, *path.parents) if p.is_symlink() and not p.exists()):
        raise UserError(  # makedirs would stop at it with FileExistsError
            f"results: {link} is a symlink to {os.readlink(link)}, which does not exist; "
            "create its target or choose another path with --results"
        )
    if not existing.is_dir() or not can_create_in(existing):
        raise UserError(f"results: {existing} is not writable; choose a writable directory with --results")


def _exists(path: Path) -> bool:
    """Something is there (a dangling symlink is not); a name too long to look up is not."""
    try:
        return path.exists()
    except OSError:
        return False


def _check_path_lengths(path: Path, existing: Path) -> None:
    """Every name under the root fits the filesystem's limits (`LONGEST_UNDER_ROOT` past the root)."""
    name_max, path_max = os.pathconf(existing, "PC_NAME_MAX"), os.pathconf(existing, "PC_PATH_MAX")
    for part in path.parts:
        if len(os.fsencode(part)) > name_max:
            raise UserError(
                f"results: the name {part[:40]}... is {len(os.fsencode(part))} bytes long, over this filesystem's "
                f"{name_max}; choose a shorter path with --results"
            )
    if len(os.fsencode(str(path))) + LONGEST_UNDER_ROOT > path_max:
        raise UserError(
            f"results: {str(path)[:60]}... is too long a path ({len(os.fsencode(str(path)))} bytes) for the files "
            f"under it (paths of up to {path_max} bytes here); choose a shorter path with --results"
        )


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
