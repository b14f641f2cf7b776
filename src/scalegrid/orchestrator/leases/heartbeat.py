"""What every lease store shares: a lease's record, its heartbeat thread, generation names and
history lines (`disk.py` and `object_store.py` are the two stores; `__init__.py` picks one)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import threading
import time
from typing import TypedDict

GEN = re.compile(r"^gen-(\d+)$")


def gen_name(gen: int) -> str:
    return f"gen-{gen:06d}"


class LeaseRecord(TypedDict, total=False):
    """What a lease generation holds: who took it, where, when (and, read back, how old it is)."""

    owner: str
    host: str
    pid: int
    acquired_at: float
    age_s: float  # seconds since its last heartbeat, when read back


class Attempt(TypedDict, total=False):
    """One line of a trial's lease history: an attempt that started training."""

    time: float
    host: str
    pid: int
    owner: str
    attempt: int  # 1, 2, ...: this owner's attempts at the trial
    resumed_from_step: int  # the checkpoint's step it started from (0: from scratch)
    node: str | None  # the Ray node it ran on


UNREADABLE = "unknown (its lease file does not read)"


def parse_record(text: str) -> LeaseRecord:
    """A lease generation's record; one that does not read (torn, planted, not JSON) is a lease of an
    unknown owner: it holds the trial until it expires by its age, then is taken over."""
    try:
        record = json.loads(text)
    except ValueError:
        return LeaseRecord(owner=UNREADABLE)
    return record if isinstance(record, dict) and isinstance(record.get("owner"), str) else LeaseRecord(owner=UNREADABLE)


def new_record(owner: str) -> LeaseRecord:
    return LeaseRecord(owner=owner, host=platform.node(), pid=os.getpid(), acquired_at=time.time())


def start_line(*, owner: str, attempt: int, resumed_from_step: int, node: str | None) -> str:
    """One history line: an attempt's start."""
    attempt = Attempt(time=time.time(), host=platform.node(), pid=os.getpid(), owner=owner, attempt=attempt,
                      resumed_from_step=resumed_from_step, node=node)
    return json.dumps(attempt) + "\n"


def history_record(line: str) -> Attempt | None:
    """One history line; a torn one (its writer died, or the disk filled mid-line) is skipped."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


class Heartbeat:
    """A lease's heartbeat thread: `beat()` every `expiry_s / 4` until stopped or lost."""

    expiry_s: float
    _stop: threading.Event

    def beat(self) -> bool:
        raise NotImplementedError

    @contextlib.contextmanager
    def heartbeating(self):
        thread = threading.Thread(target=self._beat_until_stopped, name="lease-heartbeat", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()

    def _beat_until_stopped(self) -> None:
        try:
            while not self._stop.wait(self.expiry_s / 4) and self.beat():
                pass
        except OSError:  # the storage stopped taking writes: the trial's own next write says so, in one line
            return
