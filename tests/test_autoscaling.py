"""A sweep on a cluster that starts cold: its concurrency counts the nodes the autoscaler may add.

A real Ray head with Ray's fake multi-node autoscaler (`ray_head.RayHead(node_types=...)`: each node
it adds is another raylet on this machine), one CPU on the head (the trials' drivers), up to two
nodes of 2 CPUs: four two-worker trials. Read from the live nodes alone the cap would be one trial
at a time forever; from the node types it is two, and the autoscaler adds both nodes.

Costs ~2-4 minutes on the 2 shared cores (a head, two added nodes, four Ray Train launches).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

from ray_head import RayHead
from sweep_fixtures import TINY_LM
from scalegrid import load_runs, storage
from scalegrid.orchestrator import leases
from scalegrid.orchestrator.planning.capacity import concurrent
from scalegrid.spec import parse_spec


def test_a_cold_cluster_grows_to_run_two_worker_trials_side_by_side(write_spec, tmp_path):
    results = f"file://{tmp_path / 'shared'}"  # every fake node is on this machine: a shared mount
    resources = {"workers": 2, "cpus_per_worker": 1}
    spec = write_spec({**TINY_LM, "seed": [0, 1, 2, 3], "resources": resources, "results": results,
                       "fault_tolerance": {"max_failures": 0}})
    with RayHead(num_cpus=1, node_types={"ray.worker.two": {"resources": {"CPU": 2}, "max_workers": 2}}) as head:
        done = subprocess.run(
            [sys.executable, "-m", "scalegrid.cli", "run", str(spec), "--address", head.gcs, "--no-report"],
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True, timeout=1200,
        )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "trials wait for the autoscaler" in out, out[-3000:]
    runs = load_runs(results)
    assert len(runs) == 4 and set(runs["status"]) == {"COMPLETED"} and set(runs["world_size"]) == {2}
    # Each trial trained from rank 0's start (its lease history) to its row: two at once at most.
    layout = storage.layout(results)
    spans = []
    for row in runs.itertuples():
        (start,) = [h["time"] for h in leases.history(layout, row.trial_id)]
        spans.append((dt.datetime.fromtimestamp(start, dt.timezone.utc), row.finished_at))
    most = max(sum(a <= t < b for a, b in spans) for t, _ in spans)
    assert most == 2, spans


def test_the_cap_counts_what_the_node_types_may_add():
    r = parse_spec({**TINY_LM, "resources": {"workers": 2, "cpus_per_worker": 1}}).resources
    assert concurrent({"CPU": 1.0, "GPU": 0.0}, r, None) == 1  # the cold cluster's live head alone
    assert concurrent({"CPU": 1.0 + 2 * 2, "GPU": 0.0}, r, None) == 2  # ... and two nodes of 2 CPUs it may add
    assert concurrent({"CPU": float("inf"), "GPU": 0.0}, r, 3) == 3  # a node type without a max: --max-concurrent
