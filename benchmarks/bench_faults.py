"""The fault matrix: every injected fault, then a re-run without it; prints a table of outcomes.

    python benchmarks/bench_faults.py [--only NAME ...]

Faults (tests/fault_matrix.py): a poisoned and a truncated checkpoint, the token cache deleted
mid-sweep, a full disk and a read-only remount mid-trial (a tmpfs; needs root), SIGKILL of the
driver at tokenization and mid-trial, SIGKILL of `scalegrid report`, and one row per kind of damaged
file the store holds (run rows, leases, saved models, teacher corpora, token caches, tokenizers). For each: what happened, trials trained twice, rows
lost, and whether every trial ended COMPLETED exactly once. Each scenario starts `scalegrid` as
child processes with their own embedded Ray, so it takes minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the scenarios live with the tests
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import fault_matrix  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(fault_matrix.SCENARIOS), help="run these faults only")
    args = parser.parse_args()
    results, failed = [], []
    for name, scenario in fault_matrix.SCENARIOS.items():
        if args.only and name not in args.only:
            continue
        with tempfile.TemporaryDirectory(prefix=f"bench-faults-{name.replace(' ', '-')}-") as tmp:
            try:
                result = scenario(Path(tmp))
            except AssertionError as err:  # a broken promise: shown, and the exit code says so
                failed.append(name)
                print(f"{name} FAILED; the last of its output:\n" + "\n".join(str(err).splitlines()[-40:]), file=sys.stderr)
                result = fault_matrix.Result(name, "FAILED (its output is above)", -1, -1, False)
        if result is None:
            print(f"{name}: skipped (no tmpfs can be mounted here)", file=sys.stderr)
            continue
        results.append(result)
        print(fault_matrix.table([result]).splitlines()[-1], flush=True)
    print()
    print(fault_matrix.table(results))
    # A damaged member's weights are made again by training it again: the one case a trial trains twice.
    kept = all(r.complete and r.rows_lost == 0 and (r.trials_twice == 0 or r.fault.startswith("damaged:")) for r in results)
    return 1 if failed or not kept else 0


if __name__ == "__main__":
    sys.exit(main())
