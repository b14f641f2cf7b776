"""Local directories: atomic publication of a directory, this node's cache, write probes.

A directory is published by filling a hidden temporary sibling and renaming it into place
(`rename(2)` is atomic on one filesystem): a reader sees the whole directory or none, and a
killed writer leaves only a temporary that the next writer ignores. Token caches, saved models,
teacher corpora and node-local copies of object-store directories are all written this way.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_dir(target: Path, fill: Callable[[Path], None], *, marker: str, replace: bool = False) -> Path:
    """Make `target` by `fill(tmp)` then one rename. An existing complete `target` (its `marker`
    file exists) is kept unless `replace`; a lost race with another writer is not an error."""
    if not replace and (target / marker).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        fill(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        if replace and target.exists():
            shutil.rmtree(target)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / marker).is_file():  # not a lost race with another writer: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after a successful rename; the loser's copy otherwise
    return target


def node_cache_dir() -> Path:
    """This node's cache for copies of what lives on an object store (`SCALEGRID_CACHE` overrides)."""
    return Path(os.environ.get("SCALEGRID_CACHE") or Path.home() / ".cache" / "scalegrid")


def can_create_in(directory: Path) -> bool:
    """Try it: as root, permission bits say yes where the filesystem still says no."""
    if not os.access(directory, os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.TemporaryFile(dir=directory, prefix=".scalegrid-probe-"):
            return True
    except OSError:
        return False


def process_alive(pid: int) -> bool:
    """Whether process `pid` of this host is alive (a killed process its parent has not reaped
    yet, a zombie, is dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
