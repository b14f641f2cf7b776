"""A trial on W gloo processes of this CPU, without Ray: what each Ray Train worker runs (`lm.train`
under a torch.distributed process group), started with multiprocessing's spawn.

    procs = start(4, {"trial": trial, "out": dir, "hang_at": 12})   # rank 0 stops answering at step 12
    wait(procs)                                                      # or kill(procs)
    result(dir)                                                      # rank 0's TrialResult fields
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import signal
import socket
import time
from pathlib import Path


def start(world: int, job: dict) -> list:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spawn = multiprocessing.get_context("spawn")
    procs = [spawn.Process(target=train_rank, args=(rank, world, port, job)) for rank in range(world)]
    for p in procs:
        p.start()
    return procs


def wait(procs: list, timeout: float = 600) -> list[int]:
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(timeout=max(1.0, deadline - time.monotonic()))
    kill(procs)  # any left after the deadline
    return [p.exitcode for p in procs]


def kill(procs: list) -> None:
    """SIGKILL: nothing of the processes runs after it (no finally, no background write)."""
    for p in procs:
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
    for p in procs:
        p.join(timeout=30)


def result(out: Path) -> dict:
    return json.loads((out / "result.json").read_text())


def train_rank(rank: int, world: int, port: int, job: dict) -> None:
    import torch
    import torch.distributed as dist

    from scalegrid.trainers import lm

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    out = Path(job["out"])

    def report(row: dict) -> None:
        if rank == 0 and row["step"] == job.get("hang_at"):
            (out / "hanging").write_text(str(row["step"]))
            time.sleep(3600)  # the others block in their next collective; the test kills them all

    trained = lm.train(job["trial"], report)
    if rank == 0:
        (out / "result.json").write_text(json.dumps(dataclasses.asdict(trained), default=str))
    dist.destroy_process_group()
