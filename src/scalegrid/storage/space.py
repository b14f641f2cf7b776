"""Free space: a full filesystem or quota is one line naming the path, never a traceback.

    check_space(path, needs)            up front: refuse a run whose estimate does not fit
    with storage_errors_are_one_line(path): ...    around writes: ENOSPC / EDQUOT become `StorageError`

Every writer under RESULTS goes through one of these (`ResultsLayout`'s writes, the leases, the
token cache); their temporary files are removed on the way out, so a full disk leaves nothing
half-written, and the next run (with room) finishes what is missing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from scalegrid.errors import StorageError
from scalegrid.storage.uri import is_uri

STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO)


STORAGE_MESSAGES = tuple(os.strerror(code) for code in STORAGE_ERRNOS)  # "No space left on device", ...


def is_storage_failure(err: BaseException | None) -> bool:
    """A write failed because the storage stopped taking writes (full, over quota, read-only, an
    I/O error), not because of what was written: the error itself or one it was raised from (a
    background checkpoint write's error arrives wrapped), by its errno or, where a library dropped
    the errno, by the system's words for it."""
    for _ in range(8):  # the chain of causes, bounded
        if err is None:
            return False
        if isinstance(err, StorageError) or (isinstance(err, OSError) and err.errno in STORAGE_ERRNOS):
            return True
        if isinstance(err, OSError) and any(words in str(err) for words in STORAGE_MESSAGES):
            return True
        err = err.__cause__ or err.__context__
    return False


def free_bytes(path: str | Path) -> int | None:
    """Free bytes for this user on the filesystem of `path` (its nearest existing ancestor)."""
    if is_uri(str(path)):  # an object store has no free space to ask for
        return None
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def size_text(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def storage_error(path: str | Path, needed: int | None = None, errno_: int = errno.ENOSPC) -> StorageError:
    """The one line of a storage failure at `path` (by its errno), and how to go on."""
    again = "then run the same command again: finished trials are kept"
    if errno_ == errno.EROFS:
        return StorageError(f"results: {path} has become read-only; make it writable or choose another --results, {again}")
    if errno_ == errno.EIO:
        return StorageError(f"results: {path}: the storage failed a write (an I/O error); check the disk or the mount, {again}")
    free = free_bytes(path)
    need = f"; this run needs about {size_text(needed)} more" if needed else ""
    return StorageError(
        f"results: {path} is full ({size_text(free) if free is not None else 'no space'} free{need}); free space "
        f"or choose another --results, {again}"
    )


@contextlib.contextmanager
def storage_errors_are_one_line(path: str | Path) -> Iterator[None]:
    """Turn a storage failure inside the block (full, quota, read-only, I/O) into a `StorageError` naming `path`."""
    try:
        yield
    except OSError as err:
        if err.errno in STORAGE_ERRNOS and not isinstance(err, StorageError):
            raise storage_error(path, errno_=err.errno) from None
        raise


def check_space(path: str | Path, needs: dict[str, int], *, where: str = "results") -> None:
    """Refuse up front a run whose estimated writes (`needs`: what -> bytes) do not fit in the
    free space at `path` (a local path; object stores report none). `where`: what the path is, and
    the flag or variable that moves it."""
    free, total = free_bytes(path), sum(needs.values())
    if free is None or total <= free:
        return
    parts = ", ".join(f"{what} {size_text(n)}" for what, n in needs.items() if n)
    move = "choose another --results" if where == "results" else f"point {where} elsewhere"
    raise StorageError(
        f"{where}: {path} has {size_text(free)} free, but this run needs about {size_text(total)} ({parts}); "
        f"free space or {move}"
    )
