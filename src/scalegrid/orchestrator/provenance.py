"""Where a result came from: scalegrid's version, the git commit, who ran it and when."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import platform
import subprocess
from pathlib import Path

import scalegrid
from scalegrid.grid import content_hash
from scalegrid.spec import SweepSpec


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
    return {"scalegrid_version": scalegrid.__version__, "git_commit": git_commit() or "unknown"}


def write_sweep_record(results_dir: Path | str, spec: SweepSpec, spec_path: str, info: dict[str, str]) -> str:
    """The resolved spec beside the results, named by its content hash: written once per distinct spec."""
    from scalegrid.storage import location

    loc = location(results_dir)
    resolved = spec.model_dump(mode="json")
    name = f"{spec.name}-{content_hash(resolved, 12)}.json"
    if not loc.is_file("sweeps", name):
        record = {
            **info,
            "spec_path": spec_path,
            "user": getpass.getuser(),
            "host": platform.node(),
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "spec": resolved,
        }
        loc.write_bytes(("sweeps", name), json.dumps(record, indent=2, sort_keys=True).encode())
    return loc.uri_of("sweeps", name)
