"""Data preparation: the first run of a sweep tokenizes the corpus, the second finds it cached.

Times `prepare_data` (the step `scalegrid run` takes before scheduling) twice on the same results
directory: a cold cache, then a warm one. Target: the second run spends ~0 s tokenizing.

    python benchmarks/bench_data.py [SPEC]   (default: sweeps/quickstart.yaml)
"""

from __future__ import annotations

import sys
import tempfile
import time

from scalegrid.orchestrator.plan import make_plan, prepare_data


def timed_prepare(spec: str, results: str) -> tuple[float, float]:
    start = time.perf_counter()
    plan = make_plan(spec, results=results)
    planned = time.perf_counter()
    save = prepare_data(plan)
    plan.results.makedirs()
    save()
    return planned - start, time.perf_counter() - planned


def main() -> None:
    spec = sys.argv[1] if len(sys.argv) > 1 else "sweeps/quickstart.yaml"
    with tempfile.TemporaryDirectory() as results:
        plan_cold, data_cold = timed_prepare(spec, results)
        plan_warm, data_warm = timed_prepare(spec, results)
    print(f"{spec}:")
    print(f"  first run:  plan {plan_cold:.2f} s, tokenize + cache {data_cold:.3f} s")
    print(f"  second run: plan {plan_warm:.2f} s, cache hit       {data_warm:.3f} s")


if __name__ == "__main__":
    main()
