"""Trial leases: who is training a trial now, so two drivers never train it twice.

    RESULTS/leases/<trial_id>/gen-<N>        the lease: owner, host, pid; its mtime is the heartbeat
    RESULTS/leases/<trial_id>/history.jsonl  one line per attempt that started training (append-only)

A worker takes the lease before it trains and gives it back after the run row is written. The
current lease is the highest generation. Taking one is an atomic create of generation N + 1
(`os.link` of a complete temporary file: it fails when the name exists), allowed when there is
none, when the top one's heartbeat is older than `expiry_s` or its process is gone from this host
(its owner died: the lease is taken over), or when the top one is the caller's own (Ray Tune retrying this driver's trial on another
worker or node). Two takers of one expired lease race for the same name; one wins. A worker
holding the lease touches it every `expiry_s / 4` from a thread.

After taking the lease the worker reads the store: a trial whose run row appeared meanwhile
(another driver finished it and let go) is not trained again. So a trial is trained by exactly
one lease holder, and `history.jsonl` shows every start (owner, attempt, resumed_from_step).

    >>> lease, holder = acquire(results, trial_id, owner="host-123-ab12", expiry_s=60)
    >>> if lease is None: ...   # `holder` (a dict) is training it elsewhere
    >>> with lease.heartbeating(): ...train...; lease.release()

On S3 results the same generations are objects: taking generation N + 1 is a conditional PUT
(`If-None-Match: *`, `storage/conditional.py`: one taker wins), the heartbeat rewrites the
object (its LastModified is the heartbeat: the store's clock against the driver's, so keep
`lease_expiry_s` well above any clock skew), and each attempt's start is one object under
`history/`. A lease there lapses by expiry only (no process check: the holder's host is
elsewhere). `gs://` results have no leases yet (`supported`): a trial there gets one attempt per
run and two drivers are not kept apart.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalegrid.storage import ResultsLayout
from scalegrid.storage import conditional
from scalegrid.storage.space import full_is_one_line

_GEN = re.compile(r"^gen-(\d+)$")


def supported(results: ResultsLayout) -> bool:
    """Leases work on a mounted filesystem (a path or file://) and on S3 (conditional writes)."""
    return not results.object_store or conditional.supported(results)


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
    return sorted(int(m.group(1)) for name in names if (m := _GEN.match(name)))


def _path(directory: Path, gen: int) -> Path:
    return directory / f"gen-{gen:06d}"


class _Heartbeat:
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
        while not self._stop.wait(self.expiry_s / 4) and self.beat():
            pass


@dataclass
class Lease(_Heartbeat):
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


@dataclass
class ObjectLease(_Heartbeat):
    """A lease on S3: generation `gen` of the trial's lease objects."""

    results: ResultsLayout
    trial_id: str
    gen: int
    record: dict[str, Any]
    expiry_s: float
    lost: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def parts(self) -> tuple[str, ...]:
        return _object_parts(self.results, self.trial_id, self.gen)

    def beat(self) -> bool:
        """Rewrite the lease object (a new LastModified); False when a newer generation exists."""
        gens = _object_generations(self.results, self.trial_id)
        if not gens or gens[-1] != self.gen:
            self.lost = True
            return False
        self.results.write_bytes(self.parts, json.dumps(self.record).encode())
        return True

    def release(self) -> None:
        if self.beat():
            self.results.delete(self.parts)


def _object_generations(results: ResultsLayout, trial_id: str) -> list[int]:
    return sorted(int(m.group(1)) for name in results.list(*results.lease_dir(trial_id)) if (m := _GEN.match(name)))


def _object_parts(results: ResultsLayout, trial_id: str, gen: int) -> tuple[str, ...]:
    return (*results.lease_dir(trial_id), f"gen-{gen:06d}")


def _object_record(results: ResultsLayout, trial_id: str, gen: int) -> tuple[dict[str, Any], float] | None:
    """(the record, its age in seconds) of a lease object; None when it is gone."""
    from pyarrow.fs import FileType

    parts = _object_parts(results, trial_id, gen)
    info = results.info(*parts)
    if info.type != FileType.File:
        return None
    try:
        return json.loads(results.read_bytes(*parts)), time.time() - info.mtime.timestamp()
    except (FileNotFoundError, ValueError):  # released while we looked
        return None


def _acquire_object(results: ResultsLayout, trial_id: str, *, owner: str, expiry_s: float) -> tuple[ObjectLease | None, dict | None]:
    """`acquire` on S3: generation N + 1 created with a conditional PUT."""
    record = {"owner": owner, "host": platform.node(), "pid": os.getpid(), "acquired_at": time.time()}
    for _ in range(20):  # each retry follows someone else's successful create
        gens = _object_generations(results, trial_id)
        if gens:
            top = _object_record(results, trial_id, gens[-1])
            if top is None:
                continue
            current, age = top
            if current.get("owner") != owner and age < expiry_s:
                return None, {**current, "age_s": age}
        gen = (gens[-1] if gens else 0) + 1
        if not conditional.create_if_absent(results, _object_parts(results, trial_id, gen), json.dumps(record).encode()):
            continue
        for old in gens:  # the expired or our own earlier generations
            results.delete(_object_parts(results, trial_id, old))
        return ObjectLease(results, trial_id, gen, record, expiry_s), None
    raise RuntimeError(f"could not take the lease of trial {trial_id} in {results.shown(*results.lease_dir(trial_id))}: too much contention")


def holder(results: ResultsLayout, trial_id: str, expiry_s: float) -> dict[str, Any] | None:
    """The live lease on a trial (its record plus `age_s`), or None when nobody holds one."""
    if results.object_store:
        gens = _object_generations(results, trial_id)
        top = _object_record(results, trial_id, gens[-1]) if gens else None
        return {**top[0], "age_s": top[1]} if top is not None and top[1] < expiry_s else None
    directory = lease_dir(results, trial_id)
    gens = _generations(directory)
    if not gens:
        return None
    path = _path(directory, gens[-1])
    try:
        age = time.time() - path.stat().st_mtime
        record = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):  # released while we looked
        return None
    return {**record, "age_s": age} if _live(record, age, expiry_s) else None


def _live(record: dict[str, Any], age_s: float, expiry_s: float) -> bool:
    """A lease lives while it beats, unless its process is known dead (same host, pid gone)."""
    if age_s >= expiry_s:
        return False
    if record.get("host") == platform.node() and isinstance(record.get("pid"), int):
        return _process_alive(record["pid"])
    return True


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process its parent has not reaped yet is dead too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def acquire(results: ResultsLayout, trial_id: str, *, owner: str, expiry_s: float) -> tuple[Lease | None, dict | None]:
    """(our lease, None), or (None, the live lease of another owner)."""
    if results.object_store:
        return _acquire_object(results, trial_id, owner=owner, expiry_s=expiry_s)
    directory = lease_dir(results, trial_id)
    with full_is_one_line(directory):
        directory.mkdir(parents=True, exist_ok=True)
    record = {"owner": owner, "host": platform.node(), "pid": os.getpid(), "acquired_at": time.time()}
    for _ in range(20):  # each retry follows someone else's successful create: a short loop
        gens = _generations(directory)
        if gens:
            top = _path(directory, gens[-1])
            try:
                age = time.time() - top.stat().st_mtime
                current = json.loads(top.read_text())
            except (FileNotFoundError, ValueError):
                continue  # released or replaced while we looked
            if current.get("owner") != owner and _live(current, age, expiry_s):
                return None, {**current, "age_s": age}
        target = _path(directory, (gens[-1] if gens else 0) + 1)
        tmp = directory / f".{target.name}.{uuid.uuid4().hex[:8]}"
        try:
            with full_is_one_line(directory):
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


def history(results: ResultsLayout, trial_id: str) -> list[dict[str, Any]]:
    if results.object_store:  # one object per start, named by time
        parts = (*results.lease_dir(trial_id), "history")
        return [r for name in results.list(*parts, suffix=".json") if (r := _record(results.read_bytes(*parts, name).decode())) is not None]
    path = lease_dir(results, trial_id) / "history.jsonl"
    if not path.is_file():
        return []
    return [record for line in path.read_text().splitlines() if (record := _record(line)) is not None]


def _record(line: str) -> dict[str, Any] | None:
    """One history line; a torn one (its writer died, or the disk filled mid-line) is skipped."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def record_start(results: ResultsLayout, trial_id: str, **fields: Any) -> None:
    """Append one attempt's start; only the lease holder writes, so lines never interleave."""
    line = json.dumps({"time": time.time(), "host": platform.node(), "pid": os.getpid(), **fields}) + "\n"
    if results.object_store:
        results.write_bytes((*results.lease_dir(trial_id), "history", f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"), line.encode())
        return
    path = lease_dir(results, trial_id) / "history.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with full_is_one_line(path.parent), open(path, "a") as f:
        f.write("\n" + line if _torn(path) else line)  # a torn last line never swallows this one


def _torn(path: Path) -> bool:
    """The file ends without its newline: the last append was cut short."""
    try:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except OSError:  # empty or missing
        return False


def new_owner() -> str:
    """One driver invocation: its leases, and the attempts it has made, are known by this id."""
    return f"{platform.node()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
