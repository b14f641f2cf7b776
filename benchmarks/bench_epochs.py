"""Epochs decided while training, measured on a CPU-sized synthetic corpus (issue 16).

    python benchmarks/bench_epochs.py --diagnostics    # the cost of train.diagnostics at the default probe size
    python benchmarks/bench_epochs.py --trunks         # (a) trunk-and-branch against independent WSD runs
    python benchmarks/bench_epochs.py --adaptive       # (b) adaptive stop against the fixed-epoch grid

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
from scalegrid.trainers.data import prepare  # noqa: E402


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--diagnostics", action="store_true")
    parser.add_argument("--results", help="a results directory to keep (default: a temporary one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(args.results or tmp)
        if args.diagnostics:
            bench_diagnostics(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
