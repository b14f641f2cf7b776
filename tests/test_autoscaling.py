"""Concurrency on a cluster that may grow: the cap counts the nodes its autoscaler may add.

`ray_session.growable_resources` reads the node types from the cluster config the GCS holds
(`state.get_cluster_config()`). Ray 2.60's own (v1) autoscaler monitor does not report that config
to the GCS, so a fake multi-node cluster cannot exercise it end to end here: where no config is
published the cap counts the live nodes only (a cold cluster runs one trial at a time until nodes
come). The rule itself is tested on the resources it would read.
"""

from __future__ import annotations

from sweep_fixtures import TINY_LM
from scalegrid.orchestrator.planning.capacity import concurrent
from scalegrid.spec import parse_spec


def test_the_cap_counts_what_the_node_types_may_add():
    r = parse_spec({**TINY_LM, "resources": {"workers": 2, "cpus_per_worker": 1}}).resources
    assert concurrent({"CPU": 1.0, "GPU": 0.0}, r, None) == 1  # the cold cluster's live head alone
    assert concurrent({"CPU": 1.0 + 2 * 2, "GPU": 0.0}, r, None) == 2  # ... and two nodes of 2 CPUs it may add
    assert concurrent({"CPU": float("inf"), "GPU": 0.0}, r, 3) == 3  # a node type without a max: --max-concurrent
