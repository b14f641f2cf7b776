"""One command for the GPU paths no CPU can measure: the paper's shapes through the lm trainer at
batch 64 x 4,096, vocab 128,256, on the GPU(s) of this machine, as one table.

    python benchmarks/gpu_check.py              # on one H100 / H200: under 8 minutes (--budget-s 420)
    python benchmarks/gpu_check.py --cpu-smoke  # anywhere: the same code path at a tiny size on the CPU
                                                # (the loss column is nominal there: liger needs a GPU)

Each row is one trial of `trainers/lm.py` in a fresh process (a clean `max_memory_allocated`, and
an out-of-memory row instead of a crash), `--warmup` optimizer steps (compilation happens there)
then `--steps` timed ones, from its first evaluation row to its last:

    model, compile   torch.compile per decoder layer on / off
    loss             fused: liger-kernel's fused linear cross-entropy (the `gpu` extra; "not
                     installed" otherwise); chunked: the trainer's chunked loss (liger hidden)
    micro            the micro-batch `train.micro_batch_size: auto` chose (the memory plan)
    tokens/s, MFU    MFU = tokens/s x `LlamaShape.flops_per_token` / the GPU's dense bf16 peak
    plan GiB         `gpu_memory.plan_micro_batch`'s estimated peak for that micro-batch
    peak GiB         `torch.cuda.max_memory_allocated` over the run; ratio = peak / plan

Rows run in order of what matters most (every model compiled with the fused loss first, then
eager, then the chunked loss) and stop when the next would overrun `--budget-s`. With two GPUs
visible a last row trains llama-150m on 2 DDP processes (NCCL, one GPU each) against its
1-GPU row: the scaling efficiency. Without a GPU (and no --cpu-smoke) it says so in one line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # bench_trainer: the trial of random tokens and its timed loop

PAPER = ["llama-150m", "llama-300m", "llama-600m", "llama-1.4b"]
# (compile, loss) in order of importance; a model is measured in each before the next kind starts
KINDS = [("on", "fused"), ("off", "fused"), ("on", "chunked")]
FIRST_RUN_S = {"llama-150m": 60, "llama-300m": 75, "llama-600m": 100, "llama-1.4b": 150}  # until one has run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop starting rows after this (default: 7 minutes)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--cpu-smoke", action="store_true", help="llama-50k at 4 x 64, vocab 257, on the CPU: the code path only")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # one row, in a child process
    parser.add_argument("--ddp-rank", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        return measure(json.loads(args.one))
    gpus = visible_gpus()
    if not gpus and not args.cpu_smoke:
        print("gpu_check: no CUDA GPU is visible here (torch.cuda.is_available() is False); nothing measured")
        return 0
    size = {"batch": 4, "seq": 64, "vocab": 257} if args.cpu_smoke else {"batch": 64, "seq": 4096, "vocab": 128_256}
    models = ["llama-50k"] if args.cpu_smoke else PAPER
    start, rows, spent = time.monotonic(), [], {}
    for compile_, loss in KINDS:
        for model in models:
            guess = spent.get(model, FIRST_RUN_S.get(model, 30))
            if time.monotonic() - start + guess > args.budget_s:
                rows.append({"model": model, "compile": compile_, "loss": loss, "error": "skipped: over the time budget"})
                continue
            began = time.monotonic()
            rows.append(run_row({**size, "model": model, "compile": compile_, "loss": loss, "warmup": args.warmup, "steps": args.steps}))
            spent[model] = time.monotonic() - began
    if gpus >= 2 and time.monotonic() - start + 2 * spent.get(PAPER[0], 60) <= args.budget_s:
        rows.append(ddp_row({**size, "model": PAPER[0], "compile": "on", "loss": "fused", "warmup": args.warmup, "steps": args.steps}))
    print_table(rows, size, time.monotonic() - start)
    return 0


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run_row(job: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--one", json.dumps(job)], capture_output=True, text=True)
    found = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not found:
        text = done.stderr + done.stdout
        error = "out of memory" if "out of memory" in text.lower() else (text.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return {**job, "error": error[:120]}
    return json.loads(found[-1])


def measure(job: dict) -> int:
    """One row in this process: the trial of random tokens (`bench_trainer.trial_for`), timed."""
    if job["loss"] == "chunked":
        sys.modules["liger_kernel"] = None  # an import of it fails: the trainer takes its chunked loss
    import torch

    from bench_trainer import trainer_loop, trial_for
    from scalegrid.gpu_memory import plan_micro_batch
    from scalegrid.shapes import PRESETS
    from scalegrid.trainers import devices, lm_run
    from scalegrid.trainers.loss import fused_linear_cross_entropy

    device = devices.trial_device()
    if job["loss"] == "fused" and device.type == "cuda" and fused_linear_cross_entropy() is None:
        print(json.dumps({**job, "error": "liger-kernel not installed (pip install -c constraints.txt -e '.[gpu]')"}))
        return 0
    args = argparse.Namespace(
        batch_size=job["batch"], seq_len=job["seq"], vocab_size=job["vocab"], micro_batch_size="auto", warmup_steps=job["warmup"],
        steps=job["steps"], activation_checkpointing=False, compile=job["compile"], loss_chunk_tokens=None,
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as results:
        tokens_per_s, micro = trainer_loop(args, job["model"], results)
        train = trial_for(args, job["model"], results).config.train
    shape = PRESETS[job["model"]]()
    row = {**job, "tokens_per_s": tokens_per_s, "micro": micro, "device": devices.device_name(device),
           "flops_per_token": shape.flops_per_token(job["vocab"], job["seq"]), "params": shape.num_params(job["vocab"])}
    if device.type == "cuda":
        plan = plan_micro_batch(shape, job["vocab"], train, lm_run.gpu_budget(device))
        row |= {"plan_gib": plan.total / 2**30, "peak_gib": torch.cuda.max_memory_allocated() / 2**30}
    print(json.dumps(row))
    return 0


def ddp_row(job: dict) -> dict:
    """llama-150m on 2 GPUs, one DDP process each (NCCL), the batch split between them."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as out:
        spawn = multiprocessing.get_context("spawn")
        procs = [spawn.Process(target=ddp_rank, args=(rank, port, job, out)) for rank in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=900)
        found = Path(out, "rank0.json")
        if any(p.exitcode != 0 for p in procs) or not found.exists():
            return {**job, "workers": 2, "error": f"DDP exit codes {[p.exitcode for p in procs]}"}
        return json.loads(found.read_text())


def ddp_rank(rank: int, port: int, job: dict, out: str) -> None:
    os.environ.update(CUDA_VISIBLE_DEVICES=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # before CUDA starts
    import torch.distributed as dist

    from bench_trainer import trainer_loop

    dist.init_process_group("nccl", rank=rank, world_size=2)
    args = argparse.Namespace(
        batch_size=job["batch"], seq_len=job["seq"], vocab_size=job["vocab"], micro_batch_size="auto", warmup_steps=job["warmup"],
        steps=job["steps"], activation_checkpointing=False, compile=job["compile"], loss_chunk_tokens=None,
    )
    with tempfile.TemporaryDirectory() as results:
        tokens_per_s, micro = trainer_loop(args, job["model"], results)
    if rank == 0:
        Path(out, "rank0.json").write_text(json.dumps({**job, "workers": 2, "tokens_per_s": tokens_per_s, "micro": micro}))
    dist.destroy_process_group()


def print_table(rows: list[dict], size: dict, wall_s: float) -> None:
    from bench_trainer import peak_flops

    device = next((r["device"] for r in rows if "device" in r), "cpu")
    peak = peak_flops(device)
    print(f"gpu_check on {device}: batch {size['batch']} x {size['seq']}, vocab {size['vocab']:,}; {wall_s:.0f} s; "
          f"MFU against {f'{peak / 1e12:.0f} TFLOP/s dense bf16' if peak else 'no known peak'}")
    print(f"{'model':<11} {'GPUs':>4} {'compile':>7} {'loss':>7} {'micro':>5} {'tokens/s':>10} {'MFU':>6} {'plan GiB':>8} {'peak GiB':>8} {'ratio':>5}")
    single = {r["model"]: r for r in rows if "tokens_per_s" in r and r.get("workers", 1) == 1 and r["compile"] == "on" and r["loss"] == "fused"}
    for r in rows:
        head = f"{r['model']:<11} {r.get('workers', 1):>4} {r['compile']:>7} {r['loss']:>7}"
        if "error" in r:
            print(f"{head} {r['error']}")
            continue
        flops = r.get("flops_per_token") or single.get(r["model"], {}).get("flops_per_token")
        mfu = f"{r['tokens_per_s'] * flops / peak / r.get('workers', 1):.1%}" if peak and flops else "-"
        plan, measured = r.get("plan_gib"), r.get("peak_gib")
        memory = f"{plan:>8.1f} {measured:>8.1f} {measured / plan:>5.2f}" if plan and measured else f"{'-':>8} {'-':>8} {'-':>5}"
        print(f"{head} {r['micro']:>5} {r['tokens_per_s']:>10,.0f} {mfu:>6} {memory}")
        if r.get("workers", 1) > 1 and r["model"] in single:
            print(f"  {r['model']} on {r['workers']} GPUs: {r['tokens_per_s'] / single[r['model']]['tokens_per_s'] / r['workers']:.0%} scaling efficiency")


if __name__ == "__main__":
    sys.exit(main())
