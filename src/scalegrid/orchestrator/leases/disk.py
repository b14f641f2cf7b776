"""Leases on a mounted filesystem (a path or file://): each generation a file created atomically
with `os.link`, its mtime the heartbeat; a lease also lapses when its process is gone from this host.

    RESULTS/leases/<trial_id>/gen-<N>        the lease: owner, host, pid; its mtime is the heartbeat
    RESULTS/leases/<trial_id>/history.jsonl  one line per attempt that started training (append-only)
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from scalegrid.orchestrator.leases.heartbeat import GEN, Attempt, Heartbeat, LeaseRecord, parse_record, gen_name, history_record, new_record, start_line
from scalegrid.storage import ResultsLayout
from scalegrid.storage.local import process_alive
from scalegrid.storage.space import storage_errors_are_one_line


def lease_dir(results: ResultsLayout, trial_id: str) -> Path:
    """Leases need a mounted filesystem (a path or file://): atomic links and mtimes."""
    directory = results.local(*results.lease_dir(trial_id))
    if directory is None:
        raise ValueError(f"{results}: leases need results on a mounted filesystem")
    return directory


def _generations(directory: Path) -> list[int]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(int(m.group(1)) for name in names if (m := GEN.match(name)))


def _path(directory: Path, gen: int) -> Path:
    return directory / gen_name(gen)


@dataclass
class Lease(Heartbeat):
    path: Path
    owner: str
    expiry_s: float
    lost: bool = False  # set by the heartbeat when another driver took the lease over
    _stop: threading.Event = field(default_factory=threading.Event)

    def beat(self) -> bool:
        """Touch the lease; False when it is no longer ours (taken over after a stall)."""
        gens = _generations(self.path.parent)
        if not gens or _path(self.path.parent, gens[-1]) != self.path:
            self.lost = True
            return False
        try:
            os.utime(self.path)
        except FileNotFoundError:
            self.lost = True
            return False
        return True

    def release(self) -> None:
        if self.beat():  # never remove a lease that another driver holds now
            self.path.unlink(missing_ok=True)


def holder(results: ResultsLayout, trial_id: str, expiry_s: float) -> LeaseRecord | None:
    directory = lease_dir(results, trial_id)
    gens = _generations(directory)
    if not gens:
        return None
    path = _path(directory, gens[-1])
    try:
        age = time.time() - path.stat().st_mtime
        record = parse_record(path.read_text(errors="replace"))
    except FileNotFoundError:  # released while we looked
        return None
    return {**record, "age_s": age} if _live(record, age, expiry_s) else None


def _live(record: LeaseRecord, age_s: float, expiry_s: float) -> bool:
    """A lease lives while it beats, unless its process is known dead (same host, pid gone)."""
    if age_s >= expiry_s:
        return False
    if record.get("host") == platform.node() and isinstance(record.get("pid"), int):
        return process_alive(record["pid"])
    return True


def acquire(results: ResultsLayout, trial_id: str, *, owner: str, expiry_s: float) -> tuple[Lease | None, dict | None]:
    """(our lease, None), or (None, the live lease of another owner)."""
    directory = lease_dir(results, trial_id)
    with storage_errors_are_one_line(directory):
        directory.mkdir(parents=True, exist_ok=True)
    record = new_record(owner)
    for _ in range(20):  # each retry follows someone else's successful create: a short loop
        gens = _generations(directory)
        if gens:
            top = _path(directory, gens[-1])
            try:
                age = time.time() - top.stat().st_mtime
                current = parse_record(top.read_text(errors="replace"))
            except FileNotFoundError:
                continue  # released or replaced while we looked
            if current.get("owner") != owner and _live(current, age, expiry_s):
                return None, {**current, "age_s": age}
        target = _path(directory, (gens[-1] if gens else 0) + 1)
        tmp = directory / f".{target.name}.{uuid.uuid4().hex[:8]}"
        try:
            with storage_errors_are_one_line(directory):
                tmp.write_text(json.dumps(record))
                os.link(tmp, target)  # atomic; fails when another taker got this generation first
        except FileExistsError:
            continue
        finally:
            tmp.unlink(missing_ok=True)  # also after a failed write (a full disk): no temporary stays
        for gen in gens:  # the expired or our own earlier generations
            _path(directory, gen).unlink(missing_ok=True)
        return Lease(target, owner, expiry_s), None
    raise RuntimeError(f"could not take the lease of trial {trial_id} in {directory}: too much contention")


def history(results: ResultsLayout, trial_id: str) -> list[Attempt]:
    path = lease_dir(results, trial_id) / "history.jsonl"
    if not path.is_file():
        return []
    return [record for line in path.read_text().splitlines() if (record := history_record(line)) is not None]


def record_start(results: ResultsLayout, trial_id: str, *, owner: str, attempt: int, resumed_from_step: int, node: str | None = None) -> None:
    """Append one attempt's start; only the lease holder writes, so lines never interleave."""
    path = lease_dir(results, trial_id) / "history.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with storage_errors_are_one_line(path.parent), open(path, "a") as f:
        line = start_line(owner=owner, attempt=attempt, resumed_from_step=resumed_from_step, node=node)
        f.write("\n" + line if _torn(path) else line)  # a torn last line never swallows this one


def _torn(path: Path) -> bool:
    """The file ends without its newline: the last append was cut short."""
    try:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except OSError:  # empty or missing
        return False
