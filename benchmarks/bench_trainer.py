"""The lm trainer's speed and memory against a plain PyTorch loop on the same model: tokens/s,
MFU and peak memory, for the paper's shapes or any preset.

    python benchmarks/bench_trainer.py --paper          # on one GPU: the paper's 150M / 300M / 600M / 1.4B
                                                        # at batch 64 x 4,096, vocab 128,256 (~20 min on an H100)
    python benchmarks/bench_trainer.py --paper --seq-len 256 --batch-size 4 --models llama-150m llama-300m \\
        --warmup-steps 2 --steps 3                      # the CPU-sized run of the closing note
    python benchmarks/bench_trainer.py                  # llama-200k at 16 x 64, byte vocab: the trainer's
                                                        # overhead on a CPU (it should keep >= 0.95x the loop)

Both sides train the same `transformers` Llama (same initialisation, same AdamW parameter groups,
fused on a GPU, clipping at 1.0, bf16 autocast on a GPU) on random tokens of the same shape.

- **trainer**: scalegrid's lm trainer as a Ray worker calls it: a real token cache, the schedule,
  micro-batches (`train.micro_batch_size: auto`: on a GPU the largest divisor of the batch that
  the memory plan fits), the memory-light loss (liger-kernel's fused kernel when installed, the
  chunked loss otherwise), torch.compile per layer on a GPU, the loss window and its evaluations
  (of one validation sequence). Timed from its first report (after `--warmup-steps`, which include
  compilation) to its last.
- **plain loop**: what one writes by hand: `model(input_ids=x, labels=x).loss`, backward, clip,
  step, with gradient accumulation over the same micro-batches (a whole batch of 64 x 4,096 at
  vocab 128,256 would need 125 GiB for its logits alone), eager. Timed over the same steps.

MFU = tokens/s x FLOPs per token (`LlamaShape.flops_per_token`: 6 x the matmul parameters, lm
head included, plus attention) / the GPU's dense bf16 peak (H100 and H200 989 TFLOP/s, A100 312).
Peak memory is `torch.cuda.max_memory_allocated` on a GPU and the process's peak resident set on
a CPU (VmHWM; each side runs in its own process). A side that runs out of memory says so.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12}  # dense, per GPU
PAPER_MODELS = ["llama-150m", "llama-300m", "llama-600m", "llama-1.4b"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paper", action="store_true", help="the paper's shapes at seq 4,096, vocab 128,256, batch 64")
    parser.add_argument("--models", nargs="+", help="presets (default: llama-200k; with --paper the four paper shapes)")
    parser.add_argument("--batch-size", type=int, help="sequences per optimizer step (default 16; --paper 64)")
    parser.add_argument("--seq-len", type=int, help="default 64; --paper 4096")
    parser.add_argument("--vocab-size", type=int, help="default 257; --paper 128256")
    parser.add_argument("--micro-batch-size", default="auto", help="an integer or auto (the trainer's default)")
    parser.add_argument("--compile", choices=["auto", "on", "off"], default="auto", help="auto: on a GPU only")
    parser.add_argument("--activation-checkpointing", action="store_true")
    parser.add_argument("--loss-chunk-tokens", type=int, help="positions per loss chunk (default: by vocab, gpu_memory.py)")
    parser.add_argument("--warmup-steps", type=int, help="untimed steps (compilation happens here); default 100, --paper 10")
    parser.add_argument("--steps", type=int, help="timed optimizer steps; default 300, --paper 20")
    parser.add_argument("--side", choices=["trainer", "plain"], help=argparse.SUPPRESS)  # one measurement, in a child
    args = parser.parse_args(argv)
    fill_defaults(args)
    if args.side:
        return measure_one(args)
    rows = [run_side(args, model, side) for model in args.models for side in ("plain", "trainer")]
    print_table(args, rows)
    return 0


def fill_defaults(args) -> None:
    paper = {"models": PAPER_MODELS, "batch_size": 64, "seq_len": 4096, "vocab_size": 128_256, "warmup_steps": 10, "steps": 20}
    small = {"models": ["llama-200k"], "batch_size": 16, "seq_len": 64, "vocab_size": 257, "warmup_steps": 100, "steps": 300}
    for key, value in (paper if args.paper else small).items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def run_side(args, model: str, side: str) -> dict:
    """One side on one model, in a fresh process (a clean peak-memory reading)."""
    argv = [sys.executable, __file__, "--side", side, "--models", model, "--batch-size", str(args.batch_size),
            "--seq-len", str(args.seq_len), "--vocab-size", str(args.vocab_size), "--micro-batch-size", str(args.micro_batch_size),
            "--compile", args.compile, "--warmup-steps", str(args.warmup_steps), "--steps", str(args.steps)]
    if args.activation_checkpointing:
        argv.append("--activation-checkpointing")
    if args.loss_chunk_tokens:
        argv += ["--loss-chunk-tokens", str(args.loss_chunk_tokens)]
    done = subprocess.run(argv, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        error = "out of memory" if "out of memory" in (done.stderr + done.stdout).lower() else done.stderr.strip().splitlines()[-1:]
        return {"model": model, "side": side, "error": str(error)}
    return json.loads(lines[-1])


def measure_one(args) -> int:
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    reset_peak_memory(device)
    model = args.models[0]
    with tempfile.TemporaryDirectory() as results:
        if args.side == "trainer":
            tokens_per_s, micro_batch = trainer_loop(args, model, results)
        else:
            tokens_per_s, micro_batch = plain_loop(args, model, device)
    print(json.dumps({
        "model": model, "side": args.side, "tokens_per_s": tokens_per_s, "micro_batch": micro_batch,
        "peak_memory_gib": peak_memory_gib(device), "device": device_label(device),
    }))
    return 0


def trial_for(args, model: str, results: str):
    import tempfile
    from pathlib import Path

    import numpy as np

    from scalegrid.shapes import PRESETS
    from scalegrid.spec import SyntheticCorpusSpec, TrainSpec, ValidationSpec
    from scalegrid.storage import layout
    from scalegrid.data.corpus.build import TokenFile
    from scalegrid.data.corpus.cache import TokenCache, write_meta
    from scalegrid.data.corpus.sources import token_dtype
    from scalegrid.trial import DataIdentity, SyntheticData, Trial, TrialConfig

    micro = args.micro_batch_size if args.micro_batch_size == "auto" else int(args.micro_batch_size)
    train = TrainSpec(
        batch_size=args.batch_size, seq_len=args.seq_len, eval_every=args.warmup_steps, log_every=10, warmup_fraction=0.05,
        micro_batch_size=micro, activation_checkpointing=args.activation_checkpointing,
        compile={"auto": None, "on": True, "off": False}[args.compile], loss_chunk_tokens=args.loss_chunk_tokens,
    )
    tokens = (args.warmup_steps + args.steps) * args.batch_size * args.seq_len
    val_tokens = args.seq_len  # one validation sequence: the trainer's evaluations cost next to nothing
    data = SyntheticData(  # random tokens: the identity only names them
        generator="bench-random", synthetic=SyntheticCorpusSpec(), recipe="bench", vocab_size=args.vocab_size,
        tokenizer={"kind": "byte", "vocab_size": args.vocab_size}, validation=ValidationSpec(max_tokens=max(64, val_tokens)),
    )
    rng = np.random.default_rng(0)
    identity = DataIdentity("bench", data)
    with tempfile.TemporaryDirectory() as tmp:
        facts = {"eos_id": args.vocab_size - 1, "tokenizer": "byte", "complete": True}
        for name, count in (("train", tokens), ("val", val_tokens)):
            out = TokenFile(Path(tmp) / f"{name}.bin", token_dtype(args.vocab_size))
            out.append(rng.integers(args.vocab_size, size=count), 1)
            out.close()
            facts |= {f"{name}_tokens": out.tokens, f"{name}_documents": 1}
        write_meta(Path(tmp), identity, facts)
        TokenCache(layout(results)).publish(identity.key, Path(tmp))
    config = TrialConfig(trainer="lm", model=PRESETS[model](), data=data, unique_tokens=tokens, epochs=1, lr=1e-3,
                         weight_decay=0.1, seed=0, train=train)
    return Trial(trial_id="bench", sweep="bench", model_label=model, config=config, results=layout(results), data_key=identity.key)


def trainer_loop(args, model: str, results: str) -> tuple[float, int]:
    from scalegrid.trainers import lm, lm_run

    trial = trial_for(args, model, results)
    stamps: list[tuple[float, int]] = []
    result = lm.train(trial, lambda row: stamps.append((time.perf_counter(), row["tokens_seen"])))
    assert result.status == "COMPLETED", result.error
    (t0, n0), (t1, n1) = stamps[0], stamps[-1]
    return (n1 - n0) / (t1 - t0), lm_run.micro_batch_size(trial, args.vocab_size, lm_run.devices.trial_device())


def plain_loop(args, model: str, device) -> tuple[float, int]:
    import contextlib

    import torch

    from scalegrid.shapes import PRESETS
    from scalegrid.trainers.model import build_model, param_groups

    with tempfile.TemporaryDirectory() as results:  # the micro-batch the trainer would use
        from scalegrid.trainers import lm_run

        micro = lm_run.micro_batch_size(trial_for(args, model, results), args.vocab_size, device)
    net = build_model(PRESETS[model](), args.vocab_size, args.seq_len, seed=0, device=device)
    optimizer = torch.optim.AdamW(param_groups(net, 0.1), lr=1e-3, betas=(0.9, 0.95), eps=1e-8, fused=device.type == "cuda")
    total = args.warmup_steps + args.steps
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    net.train()
    for step in range(total):
        if step == args.warmup_steps:
            synchronize(device)
            start = time.perf_counter()
        batch = torch.randint(args.vocab_size, (args.batch_size, args.seq_len), device=device)
        for x in batch.split(micro):
            with autocast:
                loss = net(input_ids=x, labels=x).loss * (len(x) / len(batch))
            loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    loss.item()  # waits for the device
    return args.steps * args.batch_size * args.seq_len / (time.perf_counter() - start), micro


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def reset_peak_memory(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:
        with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM (Linux >= 4.0)
            f.write("5")


def peak_memory_gib(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 1024**3
    with open("/proc/self/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return kib / 1024**2


def device_label(device) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x {torch.get_num_threads()} threads"


def peak_flops(device: str) -> float | None:
    return next((flops for name, flops in PEAK_BF16_FLOPS.items() if name in device), None)


def print_table(args, rows: list[dict]) -> None:
    from scalegrid.shapes import PRESETS

    device = next((r["device"] for r in rows if "device" in r), "?")
    peak = peak_flops(device)
    print(f"device {device}; batch {args.batch_size} x seq {args.seq_len}, vocab {args.vocab_size:,}; "
          f"{args.steps} timed steps after {args.warmup_steps}; compile {args.compile}, activation checkpointing "
          f"{'on' if args.activation_checkpointing else 'off'}, loss chunk {args.loss_chunk_tokens or 'by vocab'}; "
          f"MFU against {f'{peak / 1e12:.0f} TFLOP/s' if peak else 'no known peak (CPU)'}")
    print(f"{'model':<12} {'params':>8} {'side':<8} {'micro':>5} {'tokens/s':>12} {'MFU':>6} {'peak GiB':>9}")
    for row in rows:
        shape = PRESETS[row["model"]]()
        params = f"{shape.num_params(args.vocab_size) / 1e6:.1f}M"
        if "error" in row:
            print(f"{row['model']:<12} {params:>8} {row['side']:<8} {'':>5} {row['error']}")
            continue
        flops = shape.flops_per_token(args.vocab_size, args.seq_len) * row["tokens_per_s"]
        mfu = f"{flops / peak:.1%}" if peak else "-"
        print(f"{row['model']:<12} {params:>8} {row['side']:<8} {row['micro_batch']:>5} {row['tokens_per_s']:>12,.0f} "
              f"{mfu:>6} {row['peak_memory_gib']:>9.2f}")
    for model in dict.fromkeys(r["model"] for r in rows):
        pair = {r["side"]: r for r in rows if r["model"] == model and "error" not in r}
        if len(pair) == 2:
            print(f"{model}: trainer / plain loop = {pair['trainer']['tokens_per_s'] / pair['plain']['tokens_per_s']:.3f}x tokens/s, "
                  f"{pair['trainer']['peak_memory_gib'] / pair['plain']['peak_memory_gib']:.2f}x peak memory")


if __name__ == "__main__":
    sys.exit(main())
