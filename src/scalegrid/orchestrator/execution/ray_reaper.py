"""The embedded Ray never outlives its driver: a small process that waits for the driver to end.

`ray.shutdown()` stops the embedded Ray's processes when the driver ends in order (the Ray
session's `finally`). A driver killed outright (kill -9, the OOM killer) runs no `finally`, and
some of Ray's processes (its dashboard agent, its runtime-env agent) live on under PID 1. This
reaper, started beside the embedded Ray in its own session, polls the driver; once it is gone, it
stops every process of the Ray session (its command line names the session's directory, or it
holds a file open there: its logs) with SIGTERM, then SIGKILL,
and exits. It also exits when the session's processes are gone (an orderly shutdown).

    python -m scalegrid.orchestrator.execution.ray_reaper DRIVER_PID SESSION_DIR
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from scalegrid.storage.local import process_alive

POLL_S = 0.5
GRACE_S = 3.0


def session_processes(session_dir: str) -> list[int]:
    """The pids of this machine's processes of the Ray session: their command line names
    `session_dir`, or one of their open files lies under it (their logs). Some of Ray's processes
    (its dashboard agent) rename themselves, so the command line alone misses them."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if session_dir.encode() in command or _has_open_file_under(entry, session_dir):
            found.append(int(entry.name))
    return found


def _has_open_file_under(proc: Path, directory: str) -> bool:
    try:
        fds = list((proc / "fd").iterdir())
    except OSError:  # gone, or another user's
        return False
    for fd in fds:
        try:
            if os.readlink(fd).startswith(directory):
                return True
        except OSError:
            continue
    return False


def reap(session_dir: str) -> None:
    """SIGTERM every process of the session, then SIGKILL what is left after GRACE_S."""
    for sig, wait in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, 0.0)):
        pids = session_processes(session_dir)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            time.sleep(0.1)
            pids = [p for p in pids if process_alive(p)]


def main(driver: int, session_dir: str) -> None:
    gone_since = None
    while True:
        time.sleep(POLL_S)
        if not process_alive(driver):
            reap(session_dir)
            return
        if session_processes(session_dir):
            gone_since = None
        elif gone_since is None:
            gone_since = time.monotonic()
        elif time.monotonic() - gone_since > 10:  # the session shut down in order
            return


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
