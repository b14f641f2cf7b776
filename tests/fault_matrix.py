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


def remount_read_only(mount: Path) -> None:
    """`mount -o remount,ro`, again while the kernel says busy: a file of the run may be open for
    writing at that instant (a checkpoint shard, a row) and Linux refuses to remount then."""
    for _ in range(100):
        if subprocess.run(["mount", "-o", "remount,ro", str(mount)], capture_output=True).returncode == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"{mount}: still busy after 100 tries to remount it read-only")


def read_only_mid_trial(tmp: Path, size_mb: int = 64) -> Result | None:
    """The results' filesystem is remounted read-only mid-trial: one line, exit 1; made writable
    again, the re-run finishes. None where no tmpfs can be mounted."""
    with tmpfs(tmp / "disk", size_mb) as mounted:
        if not mounted:
            return None
        started, results = time.monotonic(), tmp / "disk" / "results"
        spec = write_spec(tmp, results)
        ids = trial_ids(spec)
        # -v: Ray's messages stay on the terminal, not in a log held open for writing on the disk
        # (Linux refuses to remount a filesystem read-only while a file is open for writing there)
        proc = start("run", str(spec), "--no-report", "-v")
        assert wait_for(lambda: any(checkpoints(results, t) for t in ids), proc), kill_group(proc)[-3000:]
        remount_read_only(tmp / "disk")
        out = proc.communicate(timeout=600)[0].decode()
        errors = [line for line in out.splitlines() if line.startswith("scalegrid: error:")]
        assert proc.returncode == 1 and "Traceback" not in out, out[-3000:]
        assert len(errors) == 1 and "has become read-only" in errors[0], out[-3000:]
        subprocess.run(["mount", "-o", "remount,rw", str(tmp / "disk")], check=True)
        before = completed_rows(results)
        code, out = scalegrid("run", str(spec), "--no-report")
        assert code == 0, out[-3000:]
        return verdict("read-only mid-trial", "one line, exit 1; writable again, the re-run finished", results, ids, before, started)


STAGES = {"seed": [0, 1], "ensemble": {"members": [2], "where": [{"seed": 0}]},
          "distill": [{"teacher": {"seed": 0, "members": 2}, "method": "sequence", "synthetic_weight": 0.5}]}


def _model(results: Path, ids: list[str]) -> Path:
    runs = {p.stem for p in (results / "models").iterdir() if p.is_dir()}
    return results / "models" / next(t for t in ids if t in runs)


def _token_cache(results: Path) -> Path:
    return next((results / "cache" / "tokens").iterdir())


def _plant_lease(results: Path, ids: list[str]) -> None:
    lease = results / "leases" / ids[0]
    lease.mkdir(parents=True, exist_ok=True)
    (lease / "gen-000099").write_text('{"garbage')
    old = time.time() - 3600
    os.utime(lease / "gen-000099", (old, old))
    (results / "runs" / f"{ids[0]}.parquet").unlink()  # its trial must train again, under that lease


DAMAGES = {  # the store's file kinds, each damaged as issue 25 found them
    "run file a directory": lambda r, ids: ((r / "runs" / f"{ids[0]}.parquet").unlink(), (r / "runs" / f"{ids[0]}.parquet").mkdir()),
    "foreign run file": lambda r, ids: _write_parquet(r / "runs" / f"{ids[0]}.parquet", {"a": [1], "b": [2]}),
    "run file copied": lambda r, ids: shutil.copy(r / "runs" / f"{ids[0]}.parquet", r / "runs" / "0000000000000000.parquet"),
    "planted FAILED row": lambda r, ids: _planted_failed(r, ids[0]),
    "unreadable lease": _plant_lease,
    "pickled member weights": lambda r, ids: (_model(r, ids) / "pytorch_model.bin").write_bytes(b"\x80\x04pickle"),
    "safetensors header of 2^62": lambda r, ids: (_model(r, ids) / "model.safetensors").write_bytes((2**62).to_bytes(8, "little") + b"{}"),
    "teacher corpus of objects": lambda r, ids: _object_corpus(r),
    "token cache that overstates": lambda r, ids: _overstate(_token_cache(r)),
    "tokenizer naming code": lambda r, ids: (_token_cache(r) / "tokenizer" / "tokenizer_config.json").write_text('{"auto_map": {"AutoTokenizer": "x.T"}}'),
}


def _write_parquet(path: Path, columns: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.unlink(missing_ok=True)
    pq.write_table(pa.table(columns), path)


def _planted_failed(results: Path, trial_id: str) -> None:
    import pyarrow.parquet as pq

    row = pq.read_table(results / "runs" / f"{trial_id}.parquet").to_pylist()[0] | {"status": "FAILED"}
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist([row]), results / "runs" / "ffffffffffffffff.parquet")


def _object_corpus(results: Path) -> None:
    import numpy as np

    corpus = next((results / "cache" / "teacher").iterdir())
    np.save(corpus / "tokens.npy", np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
    for ensemble in (results / "runs").glob("*.parquet"):  # the student that read it: trained again on the new corpus
        if _stage(ensemble) == "distill":
            ensemble.unlink()


def _stage(path: Path) -> str:
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=["stage"]).column("stage")[0].as_py()


def _overstate(cache: Path) -> None:
    import json

    meta = json.loads((cache / "meta.json").read_text())
    (cache / "meta.json").write_text(json.dumps(meta | {"train_tokens": meta["train_tokens"] * 10}))


def damaged(kind: str):
    """A scenario: the sweep (with an ensemble and a sequence-level student) runs, one file of
    `kind` is damaged, the re-run sets it aside, names it and makes what it stood for again."""

    def scenario(tmp: Path) -> Result:
        started, results = time.monotonic(), tmp / "results"
        spec = write_spec(tmp, results, **STAGES)
        ids = trial_ids(spec)
        code, out = scalegrid("run", str(spec), "--no-report")
        assert code == 0, out[-3000:]
        DAMAGES[kind](results, ids)
        before = completed_rows(results)
        code, out = scalegrid("run", str(spec), "--no-report")
        assert code == 0 and "Traceback" not in out, out[-3000:]
        said = [line for line in out.splitlines() if "is damaged" in line or "set aside" in line]
        assert said or kind == "unreadable lease", out[-3000:]
        from scalegrid import load_runs

        runs = load_runs(results)
        assert set(runs["status"]) == {"COMPLETED"} and set(ids) <= set(runs["trial_id"]), out[-3000:]
        outcome = said[0].split("warning: ", 1)[-1][:90] if said else "the lease expired and was taken over"
        return verdict(f"damaged: {kind}", outcome, results, ids, {t: m for t, m in before.items() if t in ids}, started)

    return scenario


SCENARIOS = {
    "planted checkpoints": planted_checkpoints,
    "deleted token cache": deleted_token_cache,
    "full disk": full_disk,
    "kill mid-trial": kill_mid_trial,
    "kill at tokenization": kill_at_tokenization,
    "kill in report": kill_in_report,
    "read-only mid-trial": read_only_mid_trial,
    **{f"damaged: {kind}": damaged(kind) for kind in DAMAGES},
}


def table(results: list[Result]) -> str:
    rows = [("fault", "outcome", "trials twice", "rows lost", "all COMPLETED once", "s")]
    rows += [(r.fault, r.outcome, str(r.trials_twice), str(r.rows_lost), "yes" if r.complete else "NO", f"{r.seconds:.0f}") for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
