"""Checkpoints of a sharded trial: gathered on rank 0 (the old way) against every process writing its
own shards through torch.distributed.checkpoint (`trainers/dcp_checkpoint.py`), and what a
checkpoint costs a one-process trial.

    python benchmarks/bench_checkpoint.py                    # ~103M parameters (llama-300m's decoder at
                                                             # the byte vocabulary) on 2 gloo processes
    python benchmarks/bench_checkpoint.py --workers 4 --hidden 256 --layers 4 --intermediate 688 --heads 4 --json
                                                             # the small run the tests assert on
    python benchmarks/bench_checkpoint.py --one-process      # a quickstart-sized lm trial: checkpoint time / trial time

Each way runs in fresh processes (FSDP2 over `--workers` gloo processes on this CPU, one AdamW step
so the optimizer has its moments), so each reading of a process's peak resident set (VmHWM, reset
through /proc/self/clear_refs before the measured work) starts clean:

- **gathered**: `get_state_dict(full_state_dict=True, cpu_offload=True)` (a collective), rank 0
  `torch.save`s the whole model and AdamW state into one buffer and writes it; every process reads
  the whole file back and `set_state_dict(full_state_dict=True)`.
- **sharded**: `Checkpointer.save` + `wait` (each process stages its shards and writes them from a
  thread; "blocked" is what the training loop waits for) and `dcp_checkpoint.load`.

"full state" is the model's and AdamW's fp32 tensors, whole: 3 x 4 bytes per parameter. Printed:
save and load seconds, and each way's peak resident growth on rank 0 (and on the worst rank).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--intermediate", type=int, default=2688)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--vocab", type=int, default=257)
    parser.add_argument("--one-process", action="store_true", help="checkpoint time against a one-process trial's time")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    args = parser.parse_args(argv)
    if args.one_process:
        return one_process(args)
    job = {"shape": {"hidden_size": args.hidden, "num_layers": args.layers, "intermediate_size": args.intermediate,
                     "num_heads": args.heads}, "vocab": args.vocab}
    rows = [run_ranks(args.workers, {**job, "mode": mode}) for mode in ("gathered", "sharded")]
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{rows[0]['params'] / 1e6:.1f}M parameters, full state {rows[0]['full_bytes'] / 2**20:.0f} MiB, {args.workers} gloo processes")
    print(f"{'way':<9} {'save s':>7} {'blocked s':>9} {'load s':>7} {'rank-0 save peak':>17} {'worst save peak':>16} {'rank-0 load peak':>17}")
    for r in rows:
        print(f"{r['mode']:<9} {r['save_s']:>7.2f} {r['blocked_s']:>9.2f} {r['load_s']:>7.2f} {mib(r['save_peak'][0]):>17} "
              f"{mib(max(r['save_peak'])):>16} {mib(r['load_peak'][0]):>17}")
    return 0


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def run_ranks(world: int, job: dict) -> dict:
    """One way in `world` fresh processes; rank 0's figures (and every rank's peaks)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="bench-ckpt-") as tmp:
        job = {**job, "dir": tmp, "port": port, "world": world}
        spawn = multiprocessing.get_context("spawn")
        procs = [spawn.Process(target=rank_main, args=(rank, job)) for rank in range(world)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=1800)
        if any(p.exitcode != 0 for p in procs):
            raise RuntimeError(f"{job['mode']}: exit codes {[p.exitcode for p in procs]}")
        return json.loads(Path(tmp, "rank0.json").read_text())


def resident(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) * 1024


def measured(work) -> tuple[float, int]:
    """(seconds, peak resident growth in bytes) of `work()`."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM (Linux >= 4.0)
    before, start = resident("VmRSS:"), time.perf_counter()
    work()
    return time.perf_counter() - start, resident("VmHWM:") - before


def rank_main(rank: int, job: dict) -> None:
    import torch
    import torch.distributed as dist

    from scalegrid.shapes import LlamaShape
    from scalegrid.spec import TrainSpec
    from scalegrid.storage import layout
    from scalegrid.trainers.lm_run import build_optimizer
    from scalegrid.trainers.model import build_model
    from scalegrid.trainers.parallelize import Ranks, TrainingStep, apply_fsdp, checkpoint_group

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(job["port"]))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=job["world"])
    cpu, ranks = torch.device("cpu"), Ranks(rank, job["world"])
    model = build_model(LlamaShape(**job["shape"]), job["vocab"], 32, seed=0, device=cpu)
    step = apply_fsdp(TrainingStep(model), cpu, ranks)
    optimizer = build_optimizer(model, 1e-3, 0.1, TrainSpec(), cpu)
    x = torch.randint(job["vocab"], (1, 32), generator=torch.Generator().manual_seed(rank))
    step(x, x.numel(), lambda m, x, n: m(input_ids=x, labels=x).loss).backward()
    optimizer.step()
    group = checkpoint_group(ranks)
    params = int(sum(p.full_tensor().numel() if hasattr(p, "full_tensor") else p.numel() for p in model.parameters()))
    directory = layout(job["dir"]).checkpoints("bench")
    figures = (gathered if job["mode"] == "gathered" else sharded)(step, optimizer, directory, group)
    peaks = [None] * job["world"]
    dist.all_gather_object(peaks, (figures["save_peak"], figures["load_peak"]))
    if rank == 0:
        out = {**figures, "mode": job["mode"], "params": params, "full_bytes": 3 * 4 * params,
               "save_peak": [p[0] for p in peaks], "load_peak": [p[1] for p in peaks]}
        Path(job["dir"], "rank0.json").write_text(json.dumps(out))
    dist.destroy_process_group()


def sharded(step, optimizer, directory, group) -> dict:
    import torch.distributed as dist

    from scalegrid.trainers.dcp_checkpoint import Checkpointer, load
    from scalegrid.trainers.parallelize import load_shard_state_dicts, shard_state_dicts

    blocked = {}

    def save():
        with Checkpointer(directory, keep=1, group=group) as checkpoints:
            start = time.perf_counter()
            checkpoints.save(1, shard_state_dicts(step, optimizer), {})
            blocked["s"] = time.perf_counter() - start

    def restore():
        shards = shard_state_dicts(step, optimizer)
        load(directory, 1, shards, group=group)
        load_shard_state_dicts(step, optimizer, shards)

    dist.barrier()
    save_s, save_peak = measured(save)
    dist.barrier()
    load_s, load_peak = measured(restore)
    return {"save_s": save_s, "blocked_s": blocked["s"], "save_peak": save_peak, "load_s": load_s, "load_peak": load_peak}


def gathered(step, optimizer, directory, group) -> dict:
    """What checkpoints were before DCP: gathered whole on rank 0, one file, read whole by every process."""
    import io

    import torch
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

    from scalegrid.trainers.safe_load import load_torch

    results, parts = directory.results, (*directory.parts, "gathered.pt")

    def save():
        model_state, optim_state = get_state_dict(step, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if dist.get_rank() == 0:
            buffer = io.BytesIO()
            torch.save({"model": model_state, "optimizer": optim_state}, buffer)
            results.write_bytes(parts, buffer.getvalue())
        dist.barrier()

    def restore():
        state = load_torch(str(results.local(*parts)))
        set_state_dict(step, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"],
                       options=StateDictOptions(full_state_dict=True))

    dist.barrier()
    save_s, save_peak = measured(save)
    dist.barrier()
    load_s, load_peak = measured(restore)
    return {"save_s": save_s, "blocked_s": save_s, "save_peak": save_peak, "load_s": load_s, "load_peak": load_peak}


def one_process(args) -> int:
    """A quickstart-sized lm trial (llama-1m, 8,192 tokens x 32 epochs at batch 8 x 64: 512 steps,
    checkpoints every 200 as by default) trained here: what its loop waited on checkpoints."""
    from scalegrid.data.identity import prepare
    from scalegrid.shapes import PRESETS
    from scalegrid.spec import DataSpec, FaultToleranceSpec, TrainSpec
    from scalegrid.storage import layout
    from scalegrid.trainers import lm
    from scalegrid.trainers.dcp_checkpoint import Checkpointer
    from scalegrid.trial import Trial, TrialConfig

    spent = {"save": 0.0, "__exit__": 0.0, "saves": 0}
    for name in ("save", "__exit__"):  # what the training loop waits for: staging (and the write before), the last write
        original = getattr(Checkpointer, name)

        def timed(self, *a, _original=original, _name=name, **k):
            start = time.perf_counter()
            try:
                return _original(self, *a, **k)
            finally:
                spent[_name] += time.perf_counter() - start
                spent["saves"] += _name == "save"

        setattr(Checkpointer, name, timed)
    with tempfile.TemporaryDirectory(prefix="bench-ckpt-") as tmp:
        data = DataSpec(source="synthetic", synthetic={"documents": 2000, "entities": 100, "seed": 0}, unique_tokens=[8192],
                        validation={"fraction": 0.05, "max_tokens": 4096})
        identity, _ = prepare(data, layout(tmp))
        config = TrialConfig(trainer="lm", model=PRESETS["llama-1m"](), data=identity.config, unique_tokens=8192, epochs=32,
                             lr=3e-3, weight_decay=0.1, seed=0, train=TrainSpec(batch_size=8, seq_len=64))
        trial = Trial(trial_id="bench", sweep="bench", model_label="llama-1m", config=config, results=layout(tmp),
                      data_key=identity.key, fault_tolerance=FaultToleranceSpec(checkpoint_every=200))
        start = time.perf_counter()
        result = lm.train(trial, lambda row: None)
        wall = time.perf_counter() - start
    waited = spent["save"] + spent["__exit__"]
    figures = {"trial_s": wall, "steps": result.steps, "saves": spent["saves"], "checkpoint_s": waited, "share": waited / wall}
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"llama-1m, {result.steps} steps: {wall:.1f} s; {spent['saves']} checkpoints, the loop waited {waited:.3f} s on them "
              f"({100 * waited / wall:.2f}% of the trial)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
