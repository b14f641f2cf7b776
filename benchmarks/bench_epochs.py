"""Epochs decided while training, measured on a CPU-sized synthetic corpus (issue 16).

    python benchmarks/bench_epochs.py --diagnostics    # the cost of train.diagnostics at the default probe size
    python benchmarks/bench_epochs.py --trunks         # (a) trunk-and-branch against independent WSD runs and
                                                       # (b) adaptive stops against the fixed-epoch grid's best
    python benchmarks/bench_epochs.py --saturating     # (c) where the data runs out (a U-shaped loss against
                                                       # epochs): each stop rule against the fixed grid

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

from scalegrid import store  # noqa: E402
from scalegrid.analysis.epochs import adaptive_against_fixed  # noqa: E402
from scalegrid.data.identity import prepare  # noqa: E402
from scalegrid.orchestrator.planning.stage_graph import build  # noqa: E402
from scalegrid.spec import load_sweep  # noqa: E402
from scalegrid.storage import layout  # noqa: E402
from scalegrid.trainers import get_trainer  # noqa: E402


def trials(results: Path, *, unique_tokens: list[int], epochs, redundancy: float = 0.0, train: dict | None = None,
           lr: float = 3e-3, documents: int = 6000, model: str = "llama-50k", weight_decay: float = 0.1,
           adaptive: dict | None = None):
    """The trials of a synthetic-corpus sweep, its token cache prepared under `results`."""
    spec = load_sweep({
        "name": "bench-epochs", "trainer": "lm", "model": model, "epochs": epochs, "lr": lr, "weight_decay": weight_decay,
        "data": {"source": "synthetic", "synthetic": {"documents": documents, "redundancy": redundancy},
                 "unique_tokens": unique_tokens, "validation": {"fraction": 0.05, "max_tokens": 8192}},
        "train": {"batch_size": 16, "seq_len": 64, "eval_every": 10**6, "log_every": 50, **(train or {})},
        "results": str(results), "fault_tolerance": {"checkpoint_every": 10**9},  # no resuming a measured trial
        "keep_weights": False,
        **({"adaptive": adaptive} if adaptive else {}),
    })
    identity, _ = prepare(spec.data, layout(str(results)))
    return build(spec, identity, layout(str(results))).trials


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


# (c) Settings where the data runs out inside the fixed grid (loss against epochs is U-shaped):
# (model, unique tokens, peak lr, weight decay). Calibrated on this machine: see docs/story.md.
SATURATING = [("llama-50k", 1024, 1e-2, 0.1), ("llama-200k", 2048, 3e-3, 0.4)]
SATURATING_EPOCHS = [2, 4, 8, 16, 32, 64]
STOP_RULES = [
    {"rule": "val_curve", "gamma": 0.02},
    {"rule": "val_curve", "gamma": 0.02, "patience": 1},
    {"rule": "grad_stats", "gamma": 0.02},
]


def bench_saturating(results: Path, settings, gamma: float) -> None:
    """(c) Per setting, the fixed grid (one wsd trunk) and one adaptive run per stop rule, all at
    the same point (`adaptive:` of a spec: the trials `scalegrid run` would train), written to the
    store and compared by `analysis.epochs.adaptive_against_fixed`, as the report does."""
    from scalegrid.trainers import lm, trunk_groups

    rules = [{**r, "gamma": gamma} for r in STOP_RULES]
    for model, budget, lr, wd in settings:
        root = results / f"{model}-u{budget}"
        adaptive = {"max": max(SATURATING_EPOCHS), "stop": rules, "epochs": SATURATING_EPOCHS}
        wsd = {"schedule": "wsd", "warmup_fraction": 0.05, "diagnostics": True}
        todo = trials(root, unique_tokens=[budget], epochs=max(SATURATING_EPOCHS), train=wsd, lr=lr, model=model,
                      weight_decay=wd, adaptive=adaptive)
        start = time.perf_counter()
        for group in _groups(todo, trunk_groups.vector_key):
            for trial, result in zip(group, lm.train_many(group)):
                store.write_run(trial.results, store.trial_row(trial, result, wall_s=0.0, provenance={}))
        wall = time.perf_counter() - start
        table = adaptive_against_fixed(store.load_runs(str(root)))
        first = table.iloc[0]
        print(f"(c) {model}, U {budget}, lr {lr:g}, wd {wd:g}: fixed val_loss by epochs "
              + ", ".join(f"{e}: {v:.4f}" for e, v in zip(first["fixed_epochs"], first["fixed_losses"]))
              + f"; best {int(first['best_epochs'])}; {wall:.0f} s for all; load {load()}", flush=True)
        for _, r in table.iterrows():
            stopped = f"stopped after {int(r['stopped_epoch'])}" if r["stopped_epoch"] == r["stopped_epoch"] else "never stopped"
            print(f"    {r['rule']:10s} patience {r['patience']}: {stopped}, {r['tokens_seen']:,} tokens = "
                  f"{r['token_share']:.0%} of the longest fixed run's ({1 - r['token_share']:.0%} saved), val_loss "
                  f"{r['val_loss']:.4f} ({r['loss_lost']:+.2%} against the best fixed); goal met: {r['meets_goal']}", flush=True)


def _groups(trials, key):
    groups: dict[str, list] = {}
    for t in trials:
        groups.setdefault(key(t.config), []).append(t)
    return list(groups.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--diagnostics", action="store_true")
    parser.add_argument("--trunks", action="store_true", help="(a) and (b) on two redundancies x two budgets")
    parser.add_argument("--saturating", action="store_true", help="(c) each stop rule on settings where the data runs out")
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
        if args.saturating:
            bench_saturating(results, SATURATING, args.gamma)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
