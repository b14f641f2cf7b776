"""Leases on an object store (S3, GCS): the same generations as objects. Taking generation N + 1 is a
conditional create (S3 `If-None-Match: *`, GCS `ifGenerationMatch=0`; `storage/conditional.py`: one
taker wins); the heartbeat rewrites the object (its modification time is the heartbeat: the store's
clock against the driver's, so keep `lease_expiry_s` well above any clock skew); each attempt's start
is one object under `history/`. A lease here lapses by expiry only (no process check: the holder's
host is elsewhere)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field

from scalegrid.orchestrator.leases.heartbeat import GEN, Attempt, Heartbeat, LeaseRecord, parse_record, gen_name, history_record, new_record, start_line
from scalegrid.storage import ResultsLayout, conditional


@dataclass
class ObjectLease(Heartbeat):
    """A lease on an object store: generation `gen` of the trial's lease objects."""

    results: ResultsLayout
    trial_id: str
    gen: int
    record: LeaseRecord
    expiry_s: float
    lost: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def parts(self) -> tuple[str, ...]:
        return _parts(self.results, self.trial_id, self.gen)

    def beat(self) -> bool:
        """Rewrite the lease object (a new LastModified); False when a newer generation exists."""
        gens = _generations(self.results, self.trial_id)
        if not gens or gens[-1] != self.gen:
            self.lost = True
            return False
        self.results.write_bytes(self.parts, json.dumps(self.record).encode())
        return True

    def release(self) -> None:
        if self.beat():
            self.results.delete(self.parts)


def _generations(results: ResultsLayout, trial_id: str) -> list[int]:
    return sorted(int(m.group(1)) for name in results.list(*results.lease_dir(trial_id)) if (m := GEN.match(name)))


def _parts(results: ResultsLayout, trial_id: str, gen: int) -> tuple[str, ...]:
    return (*results.lease_dir(trial_id), gen_name(gen))


def _record_of(results: ResultsLayout, trial_id: str, gen: int) -> tuple[LeaseRecord, float] | None:
    """(the record, its age in seconds) of a lease object; None when it is gone."""
    from pyarrow.fs import FileType

    parts = _parts(results, trial_id, gen)
    info = results.info(*parts)
    if info.type != FileType.File:
        return None
    try:
        return parse_record(results.read_bytes(*parts).decode(errors="replace")), time.time() - info.mtime.timestamp()
    except FileNotFoundError:  # released while we looked
        return None


def acquire(results: ResultsLayout, trial_id: str, *, owner: str, expiry_s: float) -> tuple[ObjectLease | None, dict | None]:
    """`acquire` on an object store: generation N + 1 created with a conditional create."""
    record = new_record(owner)
    for _ in range(20):  # each retry follows someone else's successful create
        gens = _generations(results, trial_id)
        if gens:
            top = _record_of(results, trial_id, gens[-1])
            if top is None:
                continue
            current, age = top
            if current.get("owner") != owner and age < expiry_s:
                return None, {**current, "age_s": age}
        gen = (gens[-1] if gens else 0) + 1
        if not conditional.create_if_absent(results, _parts(results, trial_id, gen), json.dumps(record).encode()):
            continue
        for old in gens:  # the expired or our own earlier generations
            results.delete(_parts(results, trial_id, old))
        return ObjectLease(results, trial_id, gen, record, expiry_s), None
    raise RuntimeError(f"could not take the lease of trial {trial_id} in {results.shown(*results.lease_dir(trial_id))}: too much contention")


def holder(results: ResultsLayout, trial_id: str, expiry_s: float) -> LeaseRecord | None:
    gens = _generations(results, trial_id)
    top = _record_of(results, trial_id, gens[-1]) if gens else None
    return {**top[0], "age_s": top[1]} if top is not None and top[1] < expiry_s else None


def history(results: ResultsLayout, trial_id: str) -> list[Attempt]:
    """One object per start, named by time."""
    parts = (*results.lease_dir(trial_id), "history")
    return [r for name in results.list(*parts, suffix=".json") if (r := history_record(results.read_bytes(*parts, name).decode())) is not None]


def record_start(results: ResultsLayout, trial_id: str, *, owner: str, attempt: int, resumed_from_step: int, node: str | None = None) -> None:
    name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
    results.write_bytes((*results.lease_dir(trial_id), "history", name), start_line(owner=owner, attempt=attempt, resumed_from_step=resumed_from_step, node=node).encode())
