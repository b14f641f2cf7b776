"""The lm trainer's throughput against a bare PyTorch loop on the same model, batch and optimizer.

    python benchmarks/bench_trainer.py                                  # CPU, llama-200k, batch 16 x 64
    python benchmarks/bench_trainer.py --device cuda --preset llama-150m --batch-size 32 --seq-len 1024

Both sides train the same `transformers` Llama (same init), with AdamW over the same parameter
groups (fused on a GPU), gradient clipping and, on a GPU, bf16 autocast, on random tokens of the
same shape. The bare loop is what one would write by hand: batches made beforehand on the device,
forward / backward / clip / step, no schedule, no logging. The trainer runs as the orchestrator
calls it, from a real token cache, with its schedule, batching, loss window and evals (the
validation set is one batch); it is timed from its first report (after `--eval-every` steps, also
the untimed warm-up) to its last, evals included, and the bare loop over the same steps. Each side runs `--repeats`
times, alternating; the best and the median run of each are printed, and the ratio of the bests
(on a shared machine other work only ever slows a run down, so the best run is the least disturbed).
The trainer should keep at least 0.95x of the bare loop's tokens/s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if there is one")
    parser.add_argument("--preset", default="llama-200k")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--vocab-size", type=int, default=257)
    parser.add_argument("--steps", type=int, default=300, help="timed optimizer steps per run")
    parser.add_argument("--eval-every", type=int, default=100, help="trainer eval cadence; also the untimed warm-up")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch is imported: the trainer picks cuda if it sees one

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device here", file=sys.stderr)
        return 2
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")

    with tempfile.TemporaryDirectory() as results:
        data = make_token_cache(results, args)
        bare, trainer = [], []
        for _ in range(args.repeats):
            bare.append(bare_loop(args, device))
            trainer.append(trainer_loop(args, results, data))
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu x {torch.get_num_threads()} threads"
    print(f"device {name}; {args.preset}, batch {args.batch_size} x seq {args.seq_len}, vocab {args.vocab_size}, "
          f"{args.steps} timed steps after {args.eval_every} (trainer evals every {args.eval_every}), "
          f"{args.repeats} runs each")
    for label, runs in (("bare loop", bare), ("lm trainer", trainer)):
        print(f"{label:<12} best {max(runs):10,.0f} tokens/s   median {statistics.median(runs):10,.0f}   "
              f"(runs: {', '.join(f'{v:,.0f}' for v in runs)})")
    if device.type == "cuda":  # which host<->device syncs does a step make? (untimed runs)
        with tempfile.TemporaryDirectory() as results:
            data = make_token_cache(results, args)
            syncs_bare = count_syncs(lambda: bare_loop(args, device))
            syncs_trainer = count_syncs(lambda: trainer_loop(args, results, data))
        steps = args.steps + args.eval_every
        print(f"device syncs over {steps} steps: bare loop {syncs_bare}, lm trainer {syncs_trainer} "
              f"(setup, a loss read every 10 steps and the evals)")
    ratio = max(trainer) / max(bare)
    print(f"ratio        {ratio:.3f}x best to best, {statistics.median(trainer) / statistics.median(bare):.3f}x median "
          f"to median   ({'ok' if ratio >= 0.95 else 'BELOW 0.95x'})")
    return 0


def count_syncs(fn) -> int:
    """Synchronising CUDA calls made by fn (torch's sync debug mode warns at each one)."""
    import warnings

    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def make_token_cache(results: str, args) -> str:
    import tempfile
    from pathlib import Path

    import numpy as np

    from scalegrid.spec import SyntheticCorpusSpec, ValidationSpec
    from scalegrid.storage import layout
    from scalegrid.trainers.corpus.build import TokenFile
    from scalegrid.trainers.corpus.cache import TokenCache, write_meta
    from scalegrid.trainers.corpus.sources import token_dtype
    from scalegrid.trial import DataIdentity, SyntheticData

    rng = np.random.default_rng(0)
    tokens = (args.steps + args.eval_every) * args.batch_size * args.seq_len
    data = SyntheticData(  # random tokens: the identity only names them
        generator="bench-random", synthetic=SyntheticCorpusSpec(), recipe="bench", vocab_size=args.vocab_size,
        tokenizer={"kind": "byte", "vocab_size": args.vocab_size},
        validation=ValidationSpec(max_tokens=args.batch_size * args.seq_len),
    )
    identity = DataIdentity("bench", data)
    with tempfile.TemporaryDirectory() as tmp:
        facts = {"eos_id": args.vocab_size - 1, "tokenizer": "byte", "complete": True}
        for name, count in (("train", tokens), ("val", args.batch_size * args.seq_len)):
            out = TokenFile(Path(tmp) / f"{name}.bin", token_dtype(args.vocab_size))
            out.append(rng.integers(args.vocab_size, size=count), 1)
            out.close()
            facts |= {f"{name}_tokens": out.tokens, f"{name}_documents": 1}
        write_meta(Path(tmp), identity, facts)
        TokenCache(layout(results)).publish(identity.key, Path(tmp))
    return data


def trainer_loop(args, results: str, data) -> float:
    from scalegrid.shapes import PRESETS
    from scalegrid.spec import TrainSpec
    from scalegrid.storage import layout
    from scalegrid.trainers.lm import train
    from scalegrid.trial import Trial, TrialConfig

    config = TrialConfig(
        trainer="lm", model=PRESETS[args.preset](), data=data,
        unique_tokens=(args.steps + args.eval_every) * args.batch_size * args.seq_len, epochs=1,
        lr=1e-3, weight_decay=0.1, seed=0,
        train=TrainSpec(batch_size=args.batch_size, seq_len=args.seq_len, eval_every=args.eval_every,
                        log_every=10, warmup_fraction=0.05, schedule="cosine"),
    )
    stamps: list[tuple[float, int]] = []
    trial = Trial(trial_id="bench", sweep="bench", model_label=args.preset, config=config,
                  results=layout(results), data_key="bench")
    result = train(trial, lambda row: stamps.append((time.perf_counter(), row["tokens_seen"])))
    assert result.status == "COMPLETED", result.error
    (t0, n0), (t1, n1) = stamps[0], stamps[-1]
    return (n1 - n0) / (t1 - t0)


def bare_loop(args, device) -> float:
    import contextlib

    import torch

    from scalegrid.trainers.model import build_model, param_groups
    from scalegrid.shapes import PRESETS

    model = build_model(PRESETS[args.preset](), args.vocab_size, args.seq_len, seed=0, device=device)
    optimizer = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3, betas=(0.9, 0.95), eps=1e-8,
                                  fused=device.type == "cuda")
    total = args.eval_every + args.steps
    batches = torch.randint(args.vocab_size, (total, args.batch_size, args.seq_len), device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    model.train()
    for step in range(total):
        if step == args.eval_every:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        x = batches[step]
        with autocast:
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    loss.item()  # waits for the device
    return args.steps * args.batch_size * args.seq_len / (time.perf_counter() - start)


if __name__ == "__main__":
    sys.exit(main())
