"""Every way a command is stopped ends the same way: SIGTERM and SIGHUP stop it like Ctrl-C.

A `Stopped` is a `KeyboardInterrupt`, so every `finally` and every `except KeyboardInterrupt` on
the way out (Ray Tune's loop, the Ray session, the leases' heartbeats) cleans up as for Ctrl-C,
and the command line says so in one line and exits 128 + the signal's number (SIGHUP 129,
SIGINT 130, SIGTERM 143). Ray installs its own handlers when it starts in a process; the Ray
session installs these again after it (`install`).
"""

from __future__ import annotations

import signal
import threading

STOPPING = (signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """The process was asked to stop by `signum`."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_received: list[int] = []  # the stopping signals received: a library that re-raises a plain KeyboardInterrupt loses ours


def _stop(signum: int, frame) -> None:
    _received.append(signum)
    raise Stopped(signum)


def install() -> None:
    """SIGTERM and SIGHUP raise `Stopped` in the main thread (elsewhere Python cannot install them)."""
    if threading.current_thread() is threading.main_thread():
        for signum in STOPPING:
            signal.signal(signum, _stop)


def _signum(err: KeyboardInterrupt) -> int:
    return getattr(err, "signum", None) or (_received[-1] if _received else signal.SIGINT)


def exit_code(err: KeyboardInterrupt) -> int:
    """128 + the signal that stopped the process (Ctrl-C: SIGINT)."""
    return 128 + _signum(err)


def said(err: KeyboardInterrupt) -> str:
    """How the stop reads: `interrupted` (Ctrl-C) or `stopped by SIGTERM`."""
    signum = _signum(err)
    return "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
