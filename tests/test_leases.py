"""Trial leases on real files: atomic take, heartbeat, expiry and takeover, one winner under contention."""

from __future__ import annotations

import multiprocessing
import os
import time

from sweep_fixtures import LINREG
from scalegrid import grid
from scalegrid.orchestrator import leases
from scalegrid.spec import load_sweep
from scalegrid.storage import layout
from scalegrid.data.identity import describe


def test_fault_tolerance_settings_do_not_change_trial_ids():
    def ids(raw):
        spec = load_sweep(raw)
        return [t.trial_id for t in grid.expand(spec, describe(spec.data))]

    changed = {"checkpoint_every": 7, "keep_checkpoints": 5, "max_failures": 9, "lease_expiry_s": 3}
    trials = grid.expand(load_sweep({**LINREG, "fault_tolerance": changed}), describe(load_sweep(LINREG).data))
    assert ids(LINREG) == ids({**LINREG, "fault_tolerance": changed}) == [t.trial_id for t in trials]
    assert trials[0].fault_tolerance.max_failures == 9 and trials[0].checkpoint_dir.parts[-2:] == ("checkpoints", trials[0].trial_id)


def test_take_hold_release(tmp_path):
    lease, held = leases.acquire(layout(tmp_path), "t1", owner="a", expiry_s=60)
    assert lease is not None and held is None
    other, held = leases.acquire(layout(tmp_path), "t1", owner="b", expiry_s=60)
    assert other is None and held["owner"] == "a"
    assert leases.holder(layout(tmp_path), "t1", 60)["owner"] == "a"
    again, _ = leases.acquire(layout(tmp_path), "t1", owner="a", expiry_s=60)  # a retry of the same driver takes it over
    assert again is not None and again.path != lease.path and not lease.beat() and lease.lost
    lease.release()  # a lost lease is not ours to remove
    assert leases.holder(layout(tmp_path), "t1", 60)["owner"] == "a"
    again.release()
    assert leases.holder(layout(tmp_path), "t1", 60) is None
    assert leases.acquire(layout(tmp_path), "t1", owner="b", expiry_s=60)[0] is not None


def test_expired_lease_is_taken_over_and_heartbeat_keeps_it(tmp_path):
    lease, _ = leases.acquire(layout(tmp_path), "t1", owner="a", expiry_s=0.4)
    with lease.heartbeating():
        time.sleep(0.8)  # two expiries: the heartbeat (every 0.1 s) keeps it alive
        assert leases.acquire(layout(tmp_path), "t1", owner="b", expiry_s=0.4)[0] is None
    time.sleep(0.5)  # no heartbeat: expired
    taken, _ = leases.acquire(layout(tmp_path), "t1", owner="b", expiry_s=0.4)
    assert taken is not None and leases.holder(layout(tmp_path), "t1", 0.4)["owner"] == "b"
    assert not lease.beat() and lease.lost


def _contend(args):
    root, owner, start = args
    while time.time() < start:
        pass
    lease, _ = leases.acquire(layout(root), "t1", owner=owner, expiry_s=60)
    return lease is not None


def test_one_winner_among_processes_taking_an_expired_lease(tmp_path):
    stale, _ = leases.acquire(layout(tmp_path), "t1", owner="dead", expiry_s=60)
    os.utime(stale.path, (0, 0))  # its driver died long ago
    start = time.time() + 1.0
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        won = pool.map(_contend, [(str(tmp_path), f"p{i}", start) for i in range(8)])
    assert sum(won) == 1
    assert len(list((tmp_path / "leases" / "t1").glob("gen-*"))) == 1


def test_history_counts_attempts_per_driver(tmp_path):
    leases.record_start(layout(tmp_path), "t1", owner="a", attempt=1, resumed_from_step=0)
    leases.record_start(layout(tmp_path), "t1", owner="a", attempt=2, resumed_from_step=200)
    assert [h["resumed_from_step"] for h in leases.history(layout(tmp_path), "t1")] == [0, 200]


def test_a_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path):
    import json
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    lease, _ = leases.acquire(layout(tmp_path), "t1", owner="gone", expiry_s=60)
    record = json.loads(lease.path.read_text())
    lease.path.write_text(json.dumps({**record, "pid": dead.pid}))  # as its worker wrote it, then was killed
    assert leases.holder(layout(tmp_path), "t1", 60) is None
    assert leases.acquire(layout(tmp_path), "t1", owner="next", expiry_s=60)[0] is not None


def test_a_torn_history_line_is_skipped_and_never_swallows_the_next(tmp_path):
    """A writer killed (or a disk filled) mid-append leaves half a line: reading skips it."""
    results = layout(tmp_path)
    leases.record_start(results, "t1", owner="a", attempt=1, resumed_from_step=0)
    path = tmp_path / "leases" / "t1" / "history.jsonl"
    path.write_text(path.read_text() + '{"owner": "b", "attem')
    leases.record_start(results, "t1", owner="c", attempt=1, resumed_from_step=8)
    assert [(h["owner"], h["resumed_from_step"]) for h in leases.history(results, "t1")] == [("a", 0), ("c", 8)]
