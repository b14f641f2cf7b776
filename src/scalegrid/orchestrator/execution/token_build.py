"""The token cache of a sweep, built before any trial starts: here, or as a Ray task on the cluster.

Locally (no `--address`) the driver builds it: it is the machine. On a cluster the driver only
submits: building is a Ray task asking for `data.tokenize_cpus` CPUs (default: a trial's
`resources.cpus`), which runs where the cluster has room and publishes the cache into the
(shared) results store once; each node copies it to local disk when a trial there first opens it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from scalegrid.data.identity import TokenCache, prepare
from scalegrid.errors import UserError
from scalegrid.orchestrator.planning.sweep_plan import SweepPlan
from scalegrid.spec import DataSpec
from scalegrid.storage import ResultsLayout


def prepare_tokens(plan: SweepPlan, *, on_cluster: bool) -> dict | None:
    """Build (or find) the token cache of an lm sweep; returns its meta.json (None: no corpus)."""
    if plan.sweep.trainer != "lm":
        return None
    data = plan.sweep.data
    if not on_cluster:
        return _prepare(data, plan.results)
    import ray

    cpus = data.tokenize_cpus or max(int(plan.sweep.resources.cpus), 1)
    task = ray.remote(num_cpus=cpus)(_prepare).options(name=f"tokenize {plan.sweep.name}")
    try:
        return ray.get(task.remote(data.model_copy(update={"tokenize_cpus": cpus}), plan.results))
    except ray.exceptions.RayTaskError as err:
        if isinstance(err.cause, UserError):  # the corpus was bad: one line, as if it ran here
            raise err.cause from None
        raise


def _prepare(data: DataSpec, results: ResultsLayout) -> dict:
    start = time.perf_counter()
    identity, path = prepare(data, results)
    meta = TokenCache(results).meta(identity.key)
    return {**meta, "seconds": time.perf_counter() - start, "local_path": str(Path(path)), "pid": os.getpid()}
