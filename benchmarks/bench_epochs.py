"""Epochs decided while training, measured on a CPU-sized synthetic corpus (issue 16).

    python benchmarks/bench_epochs.py --diagnostics    # the cost of train.diagnostics at the default probe size
    python benchmarks/bench_epochs.py --trunks         # (a) trunk-and-branch against independent WSD runs and
                                                       # (b) adaptive stops against the fixed-epoch grid's best

Every figure is a real lm trial (llama-50k, byte tokens, batch 16 x 64) trained in this process;
wall times are noisy on a shared machine: the load (`uptime`) is printed with them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from scalegrid.grid import expand  # noqa: E402
from scalegrid.spec import parse_spec  # noqa: E402
from scalegrid.storage import layout  # noqa: E402
from scalegrid.trainers import get_trainer  # noqa: E402
from scalegrid.data.identity import prepare  # noqa: E402


def trials(results: Path, *, unique_tokens: list[int], epochs, redundancy: float = 0.0, train: dict | None = None,
           lr: float = 3e-3, documents: int = 6000):
    """The trials of a synthetic-corpus sweep, its token cache prepared under `results`."""
    spec = parse_spec({
        "name": "bench-epochs", "trainer": "lm", "model": "llama-50k", "epochs": epochs, "lr": lr, "weight_decay": 0.1,
        "data": {"source": "synthetic", "synthetic": {"documents": documents, "redundancy": redundancy},
                 "unique_tokens": unique_tokens, "validation": {"fraction": 0.05, "max_tokens": 8192}},
        "train": {"batch_size": 16, "seq_len": 64, "eval_every": 10**6, "log_every": 50, **(train or {})},
        "results": str(results), "fault_tolerance": {"checkpoint_every": 10**9},  # no resuming a measured trial
    })
    identity, _ = prepare(spec.data, layout(str(results)))
    return expand(spec, identity, layout(str(results)))


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def bench_diagnostics(results: Path, repeats: int = 3) -> None:
    """Trials with diagnostics at the default probe size (8 batches) on epochs of 160 steps (where
    the probe's batches are 5% of an epoch's): the time inside the probe (its gradients and the
    extra epoch-end evaluation) against the trial's training time, timed inside the same run."""
    from scalegrid.trainers import lm, probe

    spent = {"probe": 0.0, "eval": 0.0}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start
        return wrapper

    probe.GradientProbe.measure = timed("probe", probe.GradientProbe.measure)
    lm.evaluate = timed("eval", lm.evaluate)
    steps_per_epoch, epochs = 160, 4
    for _ in range(repeats):
        (trial,) = trials(results, unique_tokens=[steps_per_epoch * 16 * 64], epochs=epochs, train={"diagnostics": True})
        spent.update(probe=0.0, eval=0.0)
        result = get_trainer("lm")(trial, lambda row: None)
        train_s = result.curves[-1]["wall_s"]
        extra_eval = spent["eval"] * (epochs - 1) / epochs  # one evaluation per epoch; the last one a plain run makes too
        print(f"{steps_per_epoch} steps/epoch x {epochs}: trial {train_s:6.2f} s, probe gradients {spent['probe']:5.2f} s "
              f"({spent['probe'] / train_s:5.1%}), extra epoch-end evaluations {extra_eval:5.2f} s ({extra_eval / train_s:5.1%}); "
              f"load {load()}", flush=True)


EPOCHS = [1, 2, 4, 8, 16]


def steps_trained(result) -> int:
    """Optimizer steps this process computed for a trial (a branch: its decay only)."""
    return result.steps - result.resumed_from_step


def bench_trunks(results: Path, settings, gamma: float, max_epochs: int, lr: float) -> None:
    """(a) the trunk-and-branch grid against independent wsd runs; (b) adaptive stops against the
    grid's best fixed epoch count, on each (redundancy, unique tokens) setting."""
    from scalegrid.trainers import lm

    wsd = {"schedule": "wsd", "warmup_fraction": 0.05}
    for redundancy, budget in settings:
        root = results / f"r{redundancy}-u{budget}"
        grid = trials(root, unique_tokens=[budget], epochs=EPOCHS, redundancy=redundancy, train=wsd, lr=lr)
        flops_per_step = grid[0].config.model.flops_per_token(grid[0].config.vocab_size, 64) * 16 * 64
        start = time.perf_counter()
        branched = lm.train_many(grid)
        trunk_s = time.perf_counter() - start
        start = time.perf_counter()
        independent = [lm.train(t, lambda row: None) for t in grid]
        independent_s = time.perf_counter() - start
        trunk_flops = flops_per_step * sum(steps_trained(r) for r in branched)
        independent_flops = flops_per_step * sum(steps_trained(r) for r in independent)
        worst = max(abs(b.val_loss - i.val_loss) for b, i in zip(branched, independent))
        print(f"(a) redundancy {redundancy}, U {budget}: trunk {trunk_flops:.3g} FLOPs / {trunk_s:.1f} s, independent "
              f"{independent_flops:.3g} FLOPs / {independent_s:.1f} s: {trunk_flops / independent_flops:.1%} of the FLOPs, "
              f"{trunk_s / independent_s:.1%} of the wall time; max |val_loss difference| {worst:.2g}; load {load()}", flush=True)
        losses = {e: r.val_loss for e, r in zip(EPOCHS, independent)}
        best = min(losses, key=losses.get)
        print("    fixed grid val_loss by epochs: " + ", ".join(f"{e}: {v:.4f}" for e, v in losses.items()) + f"; best {best}", flush=True)
        for rule in ("val_curve", "grad_stats"):
            stop = {"rule": rule, "gamma": gamma}
            (adaptive,) = trials(root, unique_tokens=[budget], epochs={"max": max_epochs, "stop": stop}, redundancy=redundancy,
                                 train={**wsd, "diagnostics": rule == "grad_stats"}, lr=lr)
            result = lm.train(adaptive, lambda row: None)
            fixed_tokens = best * budget
            stopped = result.stopped_epoch
            print(f"(b) {rule} gamma {gamma}: {'stopped after ' + str(stopped) + ' epochs' if stopped else 'never stopped'}, "
                  f"{result.tokens_seen} tokens ({result.tokens_seen / fixed_tokens:.1%} of the best fixed run's, {best} epochs), "
                  f"val_loss {result.val_loss:.4f} ({result.val_loss / losses[best] - 1:+.2%} against it); load {load()}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--diagnostics", action="store_true")
    parser.add_argument("--trunks", action="store_true", help="(a) and (b) on two redundancies x two budgets")
    parser.add_argument("--budgets", type=int, nargs="+", default=[16384, 65536], help="unique tokens (multiples of 1024)")
    parser.add_argument("--redundancies", type=float, nargs="+", default=[0.0, 0.6])
    parser.add_argument("--gamma", type=float, default=0.02)
    parser.add_argument("--max-epochs", type=int, default=32, help="the adaptive runs' epochs.max")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak lr of every run")
    parser.add_argument("--results", help="a results directory to keep (default: a temporary one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(args.results or tmp)
        if args.diagnostics:
            bench_diagnostics(results)
        if args.trunks:
            settings = [(r, u) for r in args.redundancies for u in args.budgets]
            bench_trunks(results, settings, args.gamma, args.max_epochs, args.lr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
