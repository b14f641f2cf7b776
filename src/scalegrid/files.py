"""Why a path that should be a readable file is not one, in words a user can act on."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


def why_not_a_file(path: str | Path) -> str | None:
    """None when `path` is a regular file this process can read; else what it is instead: "not
    found", "a directory", "a symlink loop", "not a regular file (a FIFO)", "not readable (...)"."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken symlink" if os.path.islink(path) else "not found"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a symlink loop"
        return f"not readable ({err.strerror or err.__class__.__name__})"
    if stat.S_ISDIR(mode):
        return "a directory"
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket"
        return f"not a regular file ({kind})"
    if not os.access(path, os.R_OK):
        return "not readable (permission denied)"
    return None
