"""What a trial reserves on the cluster, and how many fit: pure functions of `resources:`.

A trial is one process holding `cpus`/`gpus`, or with `workers: W` a Tune trial reserving next to
nothing (the driver: it keeps the lease and writes the rows) plus W Ray Train workers of
`cpus_per_worker`/`gpus_per_worker` each (`train_launch.py`). Concurrency and packing count what
trials ask for: GPUs when they ask for GPUs, CPUs always.

    bundles(r)               [driver, worker, ...]: each a {"CPU": c, "GPU": g} one node must hold
    slots(available, r)      trials that fit at once in a pool of resources (what an autoscaler may grow it to)
    concurrent(available, r, max_concurrent)   trials at once: what fits, at most --max-concurrent
    placeable(nodes, r)      whether one trial's bundles fit on these nodes (first fit, largest first)
    stage_task(spec)         what an ensemble evaluation or a teacher's sampling reserves (a Ray task)
    evaluation_task(spec)    what a downstream evaluation of one model reserves (a Ray task)
    shares_trunks(sweep)     whether a grid's `wsd` epoch counts train as one trunk (one Tune trial)
"""

from __future__ import annotations

import math

from scalegrid.spec import ResourcesSpec, Sweep

DRIVER_CPUS = 0.01  # the Tune trial of a multi-worker trial: it only waits on its workers
KINDS = ("CPU", "GPU")


def bundles(r: ResourcesSpec) -> list[dict[str, float]]:
    """What one trial reserves, bundle by bundle (each on one node)."""
    if r.workers == 1:
        return [dict(r.worker)]
    return [{"CPU": DRIVER_CPUS, "GPU": 0.0}] + [dict(r.worker) for _ in range(r.workers)]


def total(r: ResourcesSpec) -> dict[str, float]:
    """One trial's reservation, summed over its bundles."""
    return {kind: sum(b[kind] for b in bundles(r)) for kind in KINDS}


def tune_resources(r: ResourcesSpec) -> dict[str, float]:
    """The Tune trial's own reservation (`tune.with_resources`): the first bundle."""
    first = bundles(r)[0]
    return {"cpu": first["CPU"], "gpu": first["GPU"]}


UNBOUNDED = 1 << 20  # trials at once where the pool has no limit (an autoscaler node type without a max)


def slots(available: dict[str, float], r: ResourcesSpec) -> int:
    """How many trials `available` holds at once (at least 1): by every kind the trial asks for
    (a kind may be unbounded: inf)."""
    need = total(r)
    fits = [available.get(kind, 0) / need[kind] for kind in KINDS if need[kind] > 0]
    if not fits:
        return 1
    return max(1, min(UNBOUNDED, int(min(min(fits), UNBOUNDED) + 1e-9)))


def concurrent(available: dict[str, float], r: ResourcesSpec, max_concurrent: int | None) -> int:
    """Trials that run at once: what `available` holds (`slots`), at most `max_concurrent` when given."""
    fits = slots(available, r)
    return min(fits, max_concurrent) if max_concurrent else fits


def placeable(nodes: list[dict[str, float]], r: ResourcesSpec) -> bool:
    """Whether the trial's bundles fit on `nodes` (their free resources), first fit, largest first."""
    free = [{kind: node.get(kind, 0.0) for kind in KINDS} for node in nodes]
    for bundle in sorted(bundles(r), key=lambda b: (b["GPU"], b["CPU"]), reverse=True):
        node = next((n for n in free if all(n[k] + 1e-9 >= bundle[k] for k in KINDS)), None)
        if node is None:
            return False
        for kind in KINDS:
            node[kind] -= bundle[kind]
    return True


def shown(r: ResourcesSpec) -> str:
    """One trial's reservation for a message: `1 CPU, 1 GPU` or `2 workers x (4 CPU, 1 GPU)`."""
    one = ", ".join(f"{r.worker[k]:g} {k}" for k in KINDS if r.worker[k]) or "nothing"
    return one if r.workers == 1 else f"{r.workers} workers x ({one})"


def longest_first_key(flops: float, r: ResourcesSpec) -> float:
    """A trial's expected time, up to a constant: its FLOPs over the devices it computes on."""
    need = total(r)
    return flops / (need["GPU"] if need["GPU"] > 0 else max(math.floor(need["CPU"]), 1))


def stage_task(sweep: Sweep) -> dict[str, float]:
    """`ray.remote` options of an ensemble evaluation and of a teacher corpus's sampling: one
    process on `ensemble.resources`, else on what one worker of a trial holds (its GPUs included:
    the members run there, bf16 on a GPU)."""
    return _one_process(sweep.ensemble.recipe.resources if sweep.ensemble is not None else None, sweep)


def evaluation_task(sweep: Sweep) -> dict[str, float]:
    """`ray.remote` options of a downstream evaluation: `evaluate.resources`, else one trial worker's."""
    return _one_process(sweep.evaluate.resources if sweep.evaluate is not None else None, sweep)


def _one_process(asked: ResourcesSpec | None, sweep: Sweep) -> dict[str, float]:
    r = asked if asked is not None else sweep.resources
    return {"num_cpus": r.worker["CPU"], "num_gpus": r.worker["GPU"]}


def shares_trunks(sweep: Sweep) -> bool:
    """What `launcher.schedule` trains: the `wsd` epoch counts of one point as one trunk, in one
    Tune trial and process (`trainers/trunks.py`); not when tracked (one tracker run per Tune
    trial), nor for Ray Train's multi-worker trials. (A search's walks train one trial at a time.)"""
    return not sweep.tracking.enabled and sweep.resources.workers == 1
