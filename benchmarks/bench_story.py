"""The story sweep (sweeps/story.yaml) on this machine, and its four findings judged against seed noise.

    python benchmarks/bench_story.py                          # run the sweep into results/story, report, judge
    python benchmarks/bench_story.py --judge results/story    # judge a results directory already there

Prints the wall time of `scalegrid run` with the load average before and after, each cell's
optimum (both seeds), and the paper's four findings, each marked `holds` or `within noise`:

1. loss falls with size at every budget: each size's optimum is below the next smaller size's at
   both seeds (the seeds' ranges do not overlap), and the report's law L(N) = A / N^B + C has a
   95% interval of B above 0;
2. optimal weight decay rises with size: the report's law wd* = k N^gamma over the certified cells
   has a 95% interval of gamma above 0 at every budget;
3. the ensemble is below the best single model: its loss is below both seeds' optima of its size
   and budget by more than their spread;
4. the student keeps part of the ensemble's gain: its loss is below both seeds' optima of its size
   and budget by more than their spread (retention from the report).

The numbers come from the store and the report's fits.json (`scalegrid.analysis` made them); this
script only reads and compares.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from scalegrid import store  # noqa: E402
from scalegrid.analysis.walk import search_outcomes  # noqa: E402
from scalegrid.storage import layout  # noqa: E402

HOLDS, NOISE = "holds", "within noise"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_sweep(spec: Path, results: Path) -> float:
    """`scalegrid run` in a fresh process (the command a user types); returns its wall seconds."""
    command = [sys.executable, "-m", "scalegrid.cli", "run", str(spec), "--results", str(results)]
    print(f"$ scalegrid run {spec.relative_to(ROOT)} --results {results}   (load {load()})", flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    wall = time.perf_counter() - start
    print(f"scalegrid run: {wall / 60:.1f} min (load after: {load()})", flush=True)
    return wall


def optima(results: Path) -> pd.DataFrame:
    """Each searched cell's end: size, budget, seed, outcome, the optimum (epochs, lr, wd) and its loss."""
    cells = search_outcomes(store.load_search(layout(str(results))))
    return cells[["model", "params", "unique_tokens", "seed", "outcome", "epochs", "lr", "weight_decay", "loss", "trials"]]


def judge_sizes(cells: pd.DataFrame, laws: list[dict]) -> tuple[str, list[str]]:
    lines, ok = [], True
    for budget, rows in cells.groupby("unique_tokens"):
        by_size = rows.groupby("params")["loss"].agg(["min", "max"]).sort_index()
        for (small, a), (large, b) in zip(by_size.iterrows(), list(by_size.iterrows())[1:]):
            apart = b["max"] < a["min"]
            ok &= apart
            lines.append(f"  U {budget:,}: {small:,} -> {large:,} params: [{a['min']:.4f}, {a['max']:.4f}] -> "
                         f"[{b['min']:.4f}, {b['max']:.4f}] {'apart' if apart else 'OVERLAP'}")
        law = next((l for l in laws if l["unique_tokens"] == budget), None)
        if law is None:
            ok = False
            lines.append(f"  U {budget:,}: no law fitted")
            continue
        above = law.get("B_lo") is not None and law["B_lo"] > 0
        ok &= above
        lines.append(f"  U {budget:,}: L(N) = {law['A']:.3g} / N^{law['B']:.3f} + {law['C']:.4f}, "
                     f"B in [{law.get('B_lo', float('nan')):.3f}, {law.get('B_hi', float('nan')):.3f}]")
    return (HOLDS if ok else NOISE), lines


def judge_weight_decay(cells: pd.DataFrame, laws: list[dict]) -> tuple[str, list[str]]:
    lines, ok = [], bool(laws)
    for budget, rows in cells.groupby("unique_tokens"):
        per_size = rows.groupby("params")["weight_decay"].apply(lambda v: ", ".join(f"{x:g}" for x in v))
        lines.append(f"  U {budget:,}: optimal wd by size (seeds): " + "; ".join(f"{n:,}: {w}" for n, w in per_size.items()))
    for law in laws:
        above = law.get("exponent_lo") is not None and law["exponent_lo"] > 0
        ok &= above
        lines.append(f"  U {law['unique_tokens']:,}: wd* = {law['coefficient']:.3g} N^{law['exponent']:.3f}, gamma in "
                     f"[{law.get('exponent_lo', float('nan')):.3f}, {law.get('exponent_hi', float('nan')):.3f}]")
    return (HOLDS if ok else NOISE), lines


def judge_below_single(what: str, loss: float, cells: pd.DataFrame, params: int, budget: int) -> tuple[str, list[str]]:
    """`loss` against both seeds' optima of that size and budget: below both by more than their spread."""
    seeds = cells[(cells["params"] == params) & (cells["unique_tokens"] == budget)]["loss"]
    spread = float(seeds.max() - seeds.min())
    margin = float(seeds.min() - loss)
    ok = margin > spread
    return (HOLDS if ok else NOISE), [f"  {what} {loss:.4f}; single model's optima (seeds) {', '.join(f'{v:.4f}' for v in seeds)}; "
                                      f"below the best by {margin:.4f}, seed spread {spread:.4f}"]


def judge(results: Path) -> None:
    fits = json.loads((results / "report" / "fits.json").read_text())["sections"]
    cells = optima(results)
    print("cells (size, budget, seed): outcome, optimum and its loss")
    for _, r in cells.sort_values(["unique_tokens", "params", "seed"]).iterrows():
        print(f"  {r['params']:>8,} params  U {r['unique_tokens']:>6,}  seed {r['seed']}: {r['outcome']:9s} epochs {r['epochs']:>3g}  "
              f"lr {r['lr']:.0e}  wd {r['weight_decay']:<6g} loss {r['loss']:.4f}  ({r['trials']} trials)")
    runs = store.load_runs(str(results))
    findings = [("loss falls with size at every budget", *judge_sizes(cells, fits["params"]["fits"].get("power_laws", [])))]
    findings.append(("optimal weight decay rises with size",
                     *judge_weight_decay(cells, fits["search"]["fits"].get("search_optimal_weight_decay_scaling", []))))
    ensembles = runs[runs["stage"] == "ensemble"]
    if len(ensembles):
        top = ensembles.loc[ensembles["members"].idxmax()]
        findings.append((f"the ensemble ({int(top['members'])} members) is below the best single model",
                         *judge_below_single("ensemble", float(top["val_loss"]), cells, int(top["params"]), int(top["unique_tokens"]))))
    students = runs[(runs["stage"] == "distill") & (runs["status"] == "COMPLETED")]
    for _, student in students.iterrows():
        retention = [r["retention"] for r in fits["distillation"]["fits"].get("retention", [])]
        verdict, lines = judge_below_single("student", float(student["val_loss"]), cells, int(student["params"]),
                                            int(student["unique_tokens"]))
        lines.append(f"  retention of the ensemble's gain: {', '.join(f'{r:.0%}' for r in retention)}")
        findings.append(("the student keeps part of the ensemble's gain", verdict, lines))
    print("findings:")
    for name, verdict, lines in findings:
        print(f"- {name}: {verdict}")
        print("\n".join(lines))
    adaptive = fits.get("epoch_signals", {}).get("fits", {}).get("adaptive_against_fixed", [])
    if adaptive:
        print("adaptive runs against the fixed grid:")
        for r in adaptive:
            stopped = "never" if r["stopped_epoch"] is None or np.isnan(r["stopped_epoch"]) else f"after {int(r['stopped_epoch'])}"
            print(f"  {r['params']:,} params U {r['unique_tokens']:,} seed {r['seed']} {r['rule']} (patience {r['patience']}): "
                  f"stopped {stopped}; fixed best {r['best_epochs']:g} epochs; {r['token_share']:.0%} of the longest fixed "
                  f"run's tokens, loss {r['loss_lost']:+.2%}; goal met: {r['meets_goal']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=str(ROOT / "sweeps" / "story.yaml"))
    parser.add_argument("--results", default=str(ROOT / "results" / "story"))
    parser.add_argument("--judge", metavar="RESULTS", help="only judge this results directory (no run)")
    args = parser.parse_args(argv)
    if args.judge:
        judge(Path(args.judge))
        return 0
    run_sweep(Path(args.spec), Path(args.results))
    judge(Path(args.results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
