"""Injected faults, each followed by a re-run without the fault: nothing lost, nothing trained twice.

Shared by `tests/test_fault_matrix.py` (the cheaper faults, in the suite) and
`benchmarks/bench_faults.py` (all of them, printed as a table). Every fault is real: SIGKILL of
the driver's process group, a pickle that calls os.system, a truncated file, a deleted directory,
a tmpfs that fills up (mounted here as root; `full_disk` says when the machine does not allow it).
Every `scalegrid` is a child process with its own embedded Ray, as a user runs it.

A scenario returns a `Result`: what happened, and after the re-run
    trials_twice   trials COMPLETED before the fault and trained again (their row rewritten)
    rows_lost      rows COMPLETED before the fault that are gone after it
    complete       every trial of the spec COMPLETED, with exactly one row
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from sweep_fixtures import TINY_LM

SPEC = {
    **TINY_LM,
    "seed": [0, 1],
    "train": {**TINY_LM["train"], "batch_size": 4},  # 32 steps a trial: time to hit it mid-way
    "fault_tolerance": {"checkpoint_every": 4, "lease_expiry_s": 3},
}


@dataclass
class Result:
    fault: str
    outcome: str
    trials_twice: int
    rows_lost: int
    complete: bool
    seconds: float = 0.0


class Payload:
    """A planted checkpoint's payload: unpickling it runs a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# --- running scalegrid -------------------------------------------------------------------------------


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "scalegrid.cli", *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def scalegrid(*args: str, timeout: float = 600) -> tuple[int, str]:
    done = subprocess.run(cli(*args), env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, start_new_session=True)
    return done.returncode, done.stdout.decode()


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(cli(*args), env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def kill_group(proc: subprocess.Popen) -> str:
    """SIGKILL the driver and everything it started (its embedded Ray, its workers)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return proc.communicate(timeout=60)[0].decode()


def wait_for(condition, proc: subprocess.Popen | None = None, timeout: float = 300, poll: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(poll)
    return False


def write_spec(directory: Path, results: Path, **changes) -> Path:
    path = directory / "spec.yaml"
    path.write_text(yaml.safe_dump({**SPEC, **changes, "results": str(results)}, sort_keys=False))
    return path


def trial_ids(spec: Path) -> list[str]:
    from scalegrid.orchestrator.planning.sweep_plan import make_plan

    return [t.trial_id for t in make_plan(spec).trials]


# --- what the store says -----------------------------------------------------------------------------


def run_files(results: Path) -> dict[str, int]:
    return {p.stem: p.stat().st_mtime_ns for p in (results / "runs").glob("*.parquet")}


def starts(results: Path, trial_id: str) -> list[dict]:
    from scalegrid.orchestrator import leases
    from scalegrid.storage import layout

    return leases.history(layout(results), trial_id)


def checkpoints(results: Path, trial_id: str) -> list[Path]:
    """The complete checkpoints of a trial (their DCP index written)."""
    return sorted(p.parent for p in (results / "checkpoints" / trial_id).glob("step-*/.metadata"))


def completed_rows(results: Path) -> dict[str, int]:
    """trial_id -> its run file's mtime, for the trials COMPLETED now."""
    return {tid: mtime for tid, mtime in run_files(results).items() if _status(results, tid) == "COMPLETED"}


def _status(results: Path, trial_id: str) -> str | None:
    from scalegrid import store
    from scalegrid.storage import layout

    return store.run_status(layout(results), trial_id)


def verdict(fault: str, outcome: str, results: Path, ids: list[str], before: dict[str, int], started: float) -> Result:
    """After the re-run: every trial COMPLETED once; rows COMPLETED before the fault kept as they were."""
    from scalegrid import load_runs

    runs = load_runs(results)
    after = run_files(results)
    lost = sum(1 for tid in before if tid not in after)
    twice = sum(1 for tid, mtime in before.items() if tid in after and after[tid] != mtime)
    complete = sorted(runs["trial_id"]) == sorted(ids) and set(runs["status"]) == {"COMPLETED"}
    return Result(fault, outcome, twice, lost, complete, time.monotonic() - started)


def leftovers(results: Path) -> list[str]:
    """Temporaries of scalegrid's writers (Tune's own `.validate_storage_marker` and a checkpoint's
    DCP index `.metadata` are not ones)."""
    return [
        str(p.relative_to(results)) for p in results.rglob(".*")
        if p.name not in (".validate_storage_marker", ".metadata") and not p.name.startswith(".scalegrid-probe")
    ]


# --- the faults ---------------------------------------------------------------------------------------


def planted_checkpoints(tmp: Path, run=scalegrid) -> Result:
    """A checkpoint index whose pickle runs `touch`, and a truncated one, planted where two trials
    resume from. `run(*args) -> (exit code, output)`: a child process, or the tests' in-process command."""
    started, results = time.monotonic(), tmp / "results"
    spec = write_spec(tmp, results)
    poisoned, truncated = trial_ids(spec)
    marker = tmp / "pwned"
    for tid, name in ((poisoned, "step-999999999"), (truncated, "step-000000008")):
        (results / "checkpoints" / tid / name).mkdir(parents=True)
    (results / "checkpoints" / poisoned / "step-999999999" / ".metadata").write_bytes(pickle.dumps(Payload(marker)))
    (results / "checkpoints" / truncated / "step-000000008" / ".metadata").write_bytes(pickle.dumps({"storage": [0] * 1000})[:2000 // 4])
    code, out = run("run", str(spec), "--no-report")
    assert code == 0, out[-3000:]
    assert not marker.exists(), "the planted pickle ran"
    for tid, name in ((poisoned, "step-999999999"), (truncated, "step-000000008")):
        assert f"trial {tid}: checkpoint" in out and f"{name} is unreadable" in out, out[-3000:]  # said on the driver
        assert len(list((results / "checkpoints" / tid).glob(f"{name}.corrupt-*"))) == 1  # kept aside
        assert [h["resumed_from_step"] for h in starts(results, tid)] == [0]  # the true step
    return verdict("poisoned + truncated checkpoint", "set aside, warned on the driver, nothing ran; trained from step 0",
                   results, [poisoned, truncated], {}, started)


def deleted_token_cache(tmp: Path) -> Result:
    """The token cache is deleted while the sweep runs (after the first trial finished)."""
    started, results = time.monotonic(), tmp / "results"
    spec = write_spec(tmp, results, fault_tolerance={**SPEC["fault_tolerance"], "max_failures": 0})
    ids = trial_ids(spec)
    proc = start("run", str(spec), "--max-concurrent", "1", "--no-report")
    assert wait_for(lambda: run_files(results), proc), kill_group(proc)[-3000:]
    shutil.rmtree(results / "cache" / "tokens")
    proc.communicate(timeout=600)
    before = completed_rows(results)
    code, out = scalegrid("run", str(spec), "--no-report")
    assert code == 0, out[-3000:]
    return verdict("token cache deleted mid-sweep", f"first run exit {proc.returncode} ({len(before)} of {len(ids)} done); "
                   "re-run re-tokenized and finished", results, ids, before, started)


@contextlib.contextmanager
def tmpfs(directory: Path, size_mb: int):
    """A real filesystem of `size_mb` at `directory` (mounted as root; unmounted after); yields
    False where this machine does not allow the mount."""
    directory.mkdir(parents=True, exist_ok=True)
    mounted = not subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(directory)], capture_output=True).returncode
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(directory)], capture_output=True)


def full_disk(tmp: Path, size_mb: int = 24) -> Result | None:
    """The results' filesystem (a tmpfs of `size_mb`) fills up mid-trial; None where no tmpfs can be mounted."""
    with tmpfs(tmp / "disk", size_mb) as mounted:
        return _fill_mid_trial(tmp, tmp / "disk") if mounted else None


def _fill_mid_trial(tmp: Path, disk: Path) -> Result:
    started, results = time.monotonic(), disk / "results"
    spec = write_spec(tmp, results)
    ids = trial_ids(spec)
    proc = start("run", str(spec), "--no-report")
    assert wait_for(lambda: any(checkpoints(results, t) for t in ids), proc), kill_group(proc)[-3000:]
    with open(disk / "ballast", "wb", buffering=0) as ballast:  # another writer takes the rest (unbuffered: nothing left to flush at close)
        try:
            while True:
                ballast.write(b"\0" * (1 << 16))
                ballast.flush()
        except OSError:
            pass
    out = proc.communicate(timeout=600)[0].decode()
    errors = [line for line in out.splitlines() if line.startswith("scalegrid: error:")]
    assert proc.returncode == 1 and "Traceback" not in out, out[-3000:]
    assert len(errors) == 1 and "is full" in errors[0] and str(results) in errors[0], out[-3000:]
    assert not leftovers(results), leftovers(results)
    before = completed_rows(results)
    (disk / "ballast").unlink()
    code, out = scalegrid("run", str(spec), "--no-report")
    assert code == 0, out[-3000:]
    assert not leftovers(results), leftovers(results)
    return verdict("full disk mid-trial (tmpfs)", f"one line: {errors[0][18:90]}...; no temporaries left", results, ids, before, started)


def kill_mid_trial(tmp: Path) -> Result:
    """SIGKILL of the driver's process group once a trial has a checkpoint and another a row."""
    started, results = time.monotonic(), tmp / "results"
    spec = write_spec(tmp, results, seed=[0, 1, 2])
    ids = trial_ids(spec)
    proc = start("run", str(spec), "--max-concurrent", "1", "--no-report")
    cut = lambda: run_files(results) and any(checkpoints(results, t) for t in ids if t not in run_files(results))  # noqa: E731
    assert wait_for(cut, proc, timeout=1200), kill_group(proc)[-3000:]
    kill_group(proc)
    before = completed_rows(results)
    code, out = scalegrid("run", str(spec), "--no-report")
    assert code == 0, out[-3000:]
    return verdict("kill -9 mid-trial", f"{len(before)} rows kept; the cut trial resumed from its checkpoint", results, ids, before, started)


def kill_at_tokenization(tmp: Path) -> Result:
    """SIGKILL while the corpus is tokenized (a larger corpus, so that takes seconds)."""
    started, results = time.monotonic(), tmp / "results"
    data = {**SPEC["data"], "synthetic": {"documents": 60000, "entities": 40, "seed": 1}}
    spec = write_spec(tmp, results, data=data)
    ids = trial_ids(spec)
    proc = start("run", str(spec), "--no-report")
    time.sleep(6)  # planned and tokenizing: nothing is written before the tokens are
    written_before_kill = results.exists()
    kill_group(proc)
    code, out = scalegrid("run", str(spec), "--no-report")
    assert code == 0, out[-3000:]
    what = "killed after results were written" if written_before_kill else "nothing had been written"
    return verdict("kill -9 at tokenization", f"{what}; re-run tokenized and finished", results, ids, {}, started)


def kill_in_report(tmp: Path) -> Result:
    """SIGKILL of `scalegrid report` while it draws; the re-run report is whole, the rows untouched."""
    started, results = time.monotonic(), tmp / "results"
    spec = write_spec(tmp, results)
    ids = trial_ids(spec)
    code, out = scalegrid("run", str(spec), "--no-report")
    assert code == 0, out[-3000:]
    before = completed_rows(results)
    proc = start("report", str(results))
    assert wait_for(lambda: (results / "report" / "figures").is_dir(), proc, timeout=120)
    kill_group(proc)
    code, out = scalegrid("report", str(results), "--bootstrap", "100")
    assert code == 0 and (results / "report" / "index.html").is_file(), out[-3000:]
    return verdict("kill -9 in the report", "re-run report whole", results, ids, before, started)


SCENARIOS = {
    "planted checkpoints": planted_checkpoints,
    "deleted token cache": deleted_token_cache,
    "full disk": full_disk,
    "kill mid-trial": kill_mid_trial,
    "kill at tokenization": kill_at_tokenization,
    "kill in report": kill_in_report,
}


def table(results: list[Result]) -> str:
    rows = [("fault", "outcome", "trials twice", "rows lost", "all COMPLETED once", "s")]
    rows += [(r.fault, r.outcome, str(r.trials_twice), str(r.rows_lost), "yes" if r.complete else "NO", f"{r.seconds:.0f}") for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
