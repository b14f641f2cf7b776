"""Ensemble evaluation time against K, and teacher sampling throughput with a KV cache.

    python benchmarks/bench_ensemble.py                         # CPU, llama-200k, 16,384 validation tokens
    python benchmarks/bench_ensemble.py --preset llama-1m --members 1 2 4 8 --threads 1

Ensemble evaluation (`trainers/ensemble.evaluate_members`) loads each member's saved weights and
makes one pass over the validation tokens, so evaluating every k = 1..K costs about K single
evaluations: the printed seconds per member should stay flat as K grows (a per-k evaluation
would cost K (K + 1) / 2 passes). Members are freshly initialised models saved with
`save_pretrained` (the time does not depend on the weights' values).

Teacher sampling (`trainers/distill.generate`) draws `--sample-sequences` sequences of `--seq-len`
tokens from one model and from an ensemble of `--teacher-k` members, one token per forward
pass with a KV cache per member; it prints tokens/s, and the same for a loop without a cache
(the whole prefix every step) for reference.
"""

from __future__ import annotations

import argparse
import tempfile
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="llama-200k")
    parser.add_argument("--members", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--val-tokens", type=int, default=16384)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--vocab-size", type=int, default=257)
    parser.add_argument("--sample-sequences", type=int, default=256)
    parser.add_argument("--teacher-k", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a Ray task with 1 CPU gets 1)")
    args = parser.parse_args(argv)

    import torch

    from scalegrid.trainers import distill, ensemble
    from scalegrid.storage import layout
    from scalegrid.trainers.model import build_model
    from scalegrid.trainers.weights import load_model
    from scalegrid.shapes import PRESETS

    torch.set_num_threads(args.threads)
    shape = PRESETS[args.preset]()
    root = layout(tempfile.mkdtemp(prefix="bench-ensemble-"))
    ids = []
    for m in range(max(args.members)):
        model = build_model(shape, args.vocab_size, args.seq_len, seed=m)
        model.save_pretrained(root.local(*root.model_dir(f"m{m}")))
        ids.append(f"m{m}")
    generator = torch.Generator().manual_seed(0)
    val = torch.randint(0, args.vocab_size, (args.val_tokens // args.seq_len, args.seq_len), generator=generator)
    print(f"{args.preset}: {shape.num_params(args.vocab_size):,} params, {val.numel():,} validation tokens, "
          f"{args.threads} thread(s)")

    print("\nensemble evaluation: every k = 1..K in one pass per member")
    print(f"{'K':>3} {'seconds':>8} {'s/member':>9} {'K(K+1)/2 passes would be':>26}")
    ensemble.evaluate_members(ids[:1], root, val, args.batch_size)  # warm-up
    for k in args.members:
        start = time.perf_counter()
        losses, _, _ = ensemble.evaluate_members(ids[:k], root, val, args.batch_size)
        seconds = time.perf_counter() - start
        assert len(losses) == k
        print(f"{k:>3} {seconds:>8.2f} {seconds / k:>9.2f} {seconds / k * k * (k + 1) / 2:>24.2f} s")

    print(f"\nteacher sampling: {args.sample_sequences} x {args.seq_len} tokens")
    for k in sorted({1, args.teacher_k}):
        teachers = [load_model(root, i) for i in ids[:k]]
        start = time.perf_counter()
        out = distill.generate(teachers, sequences=args.sample_sequences, seq_len=args.seq_len, start_token=0, seed=0)
        cached = out.size / (time.perf_counter() - start)
        start = time.perf_counter()
        _sample_without_cache(teachers, min(args.sample_sequences, 64), args.seq_len)
        uncached = min(args.sample_sequences, 64) * args.seq_len / (time.perf_counter() - start)
        print(f"  k={k}: {cached:,.0f} tokens/s with KV cache; {uncached:,.0f} tokens/s recomputing the prefix")
    return 0


def _sample_without_cache(teachers, sequences: int, seq_len: int) -> None:
    import torch

    from scalegrid.trainers.distill import teacher_logprobs

    ids = torch.zeros((sequences, 1), dtype=torch.long)
    for _ in range(seq_len - 1):
        ids = torch.cat([ids, torch.multinomial(teacher_logprobs(teachers, ids)[:, -1].exp(), 1)], dim=1)


if __name__ == "__main__":
    raise SystemExit(main())
