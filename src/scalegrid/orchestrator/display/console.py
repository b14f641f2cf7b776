"""What a sweep tells its user on stderr, at the verbosity asked for, and where Ray's own messages go.

    QUIET (-q)      errors, warnings and the result: no live progress, no lines about what runs
    NORMAL          also the live progress and what the run is doing (`info`)
    VERBOSE (-v)    also Ray's own messages and the trials' output

Ray writes to the process' stderr itself: its Python loggers (set up with the stderr of import
time: the token-authentication notice at `ray.init`) and its C++ core worker (an actor's restart
note from a tracker's logging actor). Below VERBOSE, `ray_messages_kept` points file descriptor 2
at a log file for the duration of a Ray session and gives scalegrid's own lines (`sys.stderr`,
looked up late everywhere) a copy of the terminal, so the user sees scalegrid's words only and
the log keeps Ray's. A Python-level stderr that is not the process' (pytest's capture, a
notebook) is left alone: there Ray's lines never reached the user's terminal through it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

QUIET, NORMAL, VERBOSE = -1, 0, 1
_level = NORMAL


def level() -> int:
    return _level


@contextlib.contextmanager
def verbosity(wanted: int):
    """Everything said during the block at `wanted` (QUIET, NORMAL or VERBOSE)."""
    global _level
    before, _level = _level, wanted
    try:
        yield
    finally:
        _level = before


def info(text: str) -> None:
    """A line about what the run is doing: shown unless quiet."""
    if _level >= NORMAL:
        print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def ray_messages_kept(log_file: Path | None):
    """Unless verbose: what Ray writes to the process' stderr goes to `log_file` (removed when
    nothing was written), scalegrid's own lines to the terminal. Yields the log file, or None
    when nothing is redirected."""
    if _level >= VERBOSE or log_file is None or not _is_process_stderr(sys.stderr):
        yield None
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    with open(log_file, "ab") as log:
        terminal = os.fdopen(os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")
        before = sys.stderr
        os.dup2(log.fileno(), 2)
        sys.stderr = terminal
        try:
            yield log_file
        finally:
            terminal.flush()
            os.dup2(terminal.fileno(), 2)
            sys.stderr = before
            terminal.close()
    with contextlib.suppress(OSError):  # another driver's log of the same name, or the results went away
        if log_file.stat().st_size == 0:
            log_file.unlink()


def _is_process_stderr(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):  # a captured or replaced stream
        return False
