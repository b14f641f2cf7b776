"""A real two-node Ray cluster on 127.0.0.1: the node training a trial dies, the trial resumes on the other.

Ray allows one cluster per process, so the cluster and its driver live in a subprocess (the
script below): a head with 1 CPU held by a placeholder actor, so that the trial lands on the
worker node; once the trial's first checkpoint exists the placeholder is killed and the worker
node removed (`Cluster.remove_node`: its raylet and workers are killed). Ray Tune retries the
trial on the head, where it resumes from the checkpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap


from sweep_fixtures import TINY_LM
from scalegrid import load_curves, load_runs
from scalegrid.orchestrator import leases
from scalegrid.orchestrator.planning.sweep_plan import make_plan
from scalegrid.trainers import get_trainer

DRIVER = textwrap.dedent(
    """
    import json, os, sys, threading, time
    from pathlib import Path

    import ray
    from ray.cluster_utils import Cluster
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from scalegrid.cli import main

    spec, results, out = sys.argv[1:]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    head = ray.get_runtime_context().get_node_id()

    @ray.remote(num_cpus=1)
    class Hold:
        def node(self):
            return ray.get_runtime_context().get_node_id()

    hold = Hold.options(scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False)).remote()
    assert ray.get(hold.node.remote()) == head
    facts = {"head": head, "worker": worker.node_id}

    def kill_worker_node_after_first_checkpoint():
        while not list(Path(results, "checkpoints").glob("*/step-*/.metadata")):
            time.sleep(0.02)
        facts["checkpoints_at_kill"] = sorted(p.parent.name for p in Path(results, "checkpoints").glob("*/step-*/.metadata"))
        ray.kill(hold)
        cluster.remove_node(worker, allow_graceful=False)
        facts["killed"] = True

    threading.Thread(target=kill_worker_node_after_first_checkpoint, daemon=True).start()
    facts["exit"] = main(["run", spec, "--no-report"])
    Path(out).write_text(json.dumps(facts))
    ray.shutdown()
    cluster.shutdown()
    """
)


def test_worker_node_killed_mid_trial_resumes_from_checkpoint_on_the_other_node(write_spec, tmp_path):
    results = tmp_path / "results"
    spec = write_spec({
        **TINY_LM, "epochs": 40, "train": {**TINY_LM["train"], "batch_size": 4, "eval_every": 128},
        "fault_tolerance": {"checkpoint_every": 16, "max_failures": 2},
    })
    script, facts_path = tmp_path / "driver.py", tmp_path / "facts.json"
    script.write_text(DRIVER)
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), str(spec), str(results), str(facts_path)],
        env=env, capture_output=True, text=True, timeout=420, start_new_session=True,
    )
    assert proc.returncode == 0 and facts_path.is_file(), (proc.stdout[-3000:], proc.stderr[-3000:])
    facts = json.loads(facts_path.read_text())
    assert facts["killed"] and facts["exit"] == 0, facts

    (trial,) = make_plan(spec).trials
    run = load_runs(results).iloc[0]
    assert run["status"] == "COMPLETED"
    tries = leases.history(trial.results, trial.trial_id)
    assert [h["node"] for h in tries] == [facts["worker"], facts["head"]], tries  # trained on the worker, then the head
    assert tries[1]["resumed_from_step"] >= 16 and tries[0]["owner"] == tries[1]["owner"]  # Tune's retry, resumed
    steps = load_curves(results)["step"].tolist()
    assert steps == sorted(set(steps)) and steps[-1] == 40 * 32  # one curve, no step evaluated twice

    import torch

    torch.set_num_threads(1)  # as in a 1-CPU Ray worker
    fresh = trial.model_copy(update={"trial_id": "fresh"})  # no checkpoints of its own: trained uninterrupted
    whole = get_trainer("lm")(fresh, lambda row: None)
    print(f"two-node resume error: {abs(whole.val_loss - run['val_loss']):.3g} (resumed from step {tries[1]['resumed_from_step']})")
    assert abs(whole.val_loss - run["val_loss"]) <= 1e-6
    assert abs(whole.train_loss - run["train_loss"]) <= 1e-6
