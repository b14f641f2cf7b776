"""Where a result came from: scalegrid's version, the git commit, who ran it and when, and the
command that runs it again."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import platform
import shlex
import subprocess
from pathlib import Path

from scalegrid.grid import content_hash
from scalegrid.spec import Sweep
from scalegrid.storage import ResultsLayout
from scalegrid.version import __version__


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        if out.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict[str, str]:
    return {"scalegrid_version": __version__, "git_commit": git_commit() or "unknown"}


def reproduce_command(sweep: Sweep, results: ResultsLayout) -> str:
    """The command that runs this sweep again (a spec given as a dict: `scalegrid.run` of it)."""
    if sweep.file is None:
        return f"scalegrid.run(spec, results={str(results)!r}) with the spec in RESULTS/sweeps/"
    overrides = [word for override in sweep.overrides for word in ("--set", override)]
    return shlex.join(["scalegrid", "run", sweep.file, *overrides, "--results", str(results)])  # credentials redacted


def write_sweep_record(results: ResultsLayout, sweep: Sweep, info: dict[str, str], *, data: dict) -> str:
    """The resolved spec (with its `--set` overrides applied and listed) and the data's identity
    (file hashes, the hub commit read) beside the results, named by their content hash: written
    once per distinct spec and data. Returns where."""
    resolved = sweep.spec.model_dump(mode="json")
    parts = results.sweep_record(f"{sweep.name}-{content_hash({'spec': resolved, 'data': data}, 12)}.json")
    if not results.is_file(*parts):
        record = {
            **info,
            "spec_path": sweep.file or "(a spec given as a dict)",
            "overrides": list(sweep.overrides),
            "user": getpass.getuser(),
            "host": platform.node(),
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "spec": resolved,
            "data": data,
        }
        results.write_bytes(parts, json.dumps(record, indent=2, sort_keys=True).encode())
    return results.uri_of(*parts)
