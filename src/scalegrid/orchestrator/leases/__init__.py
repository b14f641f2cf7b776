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

On S3 and GCS results the same generations are objects: taking generation N + 1 is a conditional
create (S3's `If-None-Match: *`, GCS's `ifGenerationMatch=0`; `storage/conditional.py`: one taker
wins), the heartbeat rewrites the object (its modification time is the heartbeat: the store's
clock against the driver's, so keep `lease_expiry_s` well above any clock skew), and each
attempt's start is one object under `history/`. A lease there lapses by expiry only (no process
check: the holder's host is elsewhere). A store without its client installed (`supported`:
boto3, google-cloud-storage) has no leases: a trial there gets one attempt per run and two drivers
are not kept apart.
"""

from __future__ import annotations

import os
import platform
import uuid

from scalegrid.orchestrator.leases import disk, object_store
from scalegrid.orchestrator.leases.heartbeat import Attempt, LeaseRecord
from scalegrid.orchestrator.leases.disk import Lease, lease_dir  # noqa: F401 - the lease of a mounted filesystem
from scalegrid.orchestrator.leases.object_store import ObjectLease
from scalegrid.storage import ResultsLayout, conditional


def supported(results: ResultsLayout) -> bool:
    """Leases work on a mounted filesystem (a path or file://), on S3 and on GCS (conditional creates)."""
    return not results.object_store or conditional.supported(results)


def _store(results: ResultsLayout):
    return object_store if results.object_store else disk


def acquire(results: ResultsLayout, trial_id: str, *, owner: str, expiry_s: float) -> tuple[Lease | ObjectLease | None, dict | None]:
    """(our lease, None), or (None, the live lease of another owner)."""
    return _store(results).acquire(results, trial_id, owner=owner, expiry_s=expiry_s)


def holder(results: ResultsLayout, trial_id: str, expiry_s: float) -> LeaseRecord | None:
    """The live lease on a trial (its record plus `age_s`), or None when nobody holds one."""
    return _store(results).holder(results, trial_id, expiry_s)


def history(results: ResultsLayout, trial_id: str) -> list[Attempt]:
    """Every attempt's start (owner, attempt, resumed_from_step, node), oldest first."""
    return _store(results).history(results, trial_id)


def record_start(results: ResultsLayout, trial_id: str, *, owner: str, attempt: int, resumed_from_step: int, node: str | None = None) -> None:
    """One attempt's start; only the lease holder writes."""
    _store(results).record_start(results, trial_id, owner=owner, attempt=attempt, resumed_from_step=resumed_from_step, node=node)


def new_owner() -> str:
    """One driver invocation: its leases, and the attempts it has made, are known by this id."""
    return f"{platform.node()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
