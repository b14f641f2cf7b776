"""Output for programs: `plan --json`, `status --json`, `run --json-summary`; and every command
exits quietly when its reader closes the pipe (`scalegrid status RESULTS | head -1`)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

from sweep_fixtures import LINREG
from scalegrid import store
from scalegrid.cli import CLOSED_PIPE, main
from scalegrid.storage import layout


def test_plan_json(write_spec, capsys):
    assert main(["plan", str(write_spec(LINREG)), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["sweep"] == "lin" and doc["totals"]["trials"] == 4 and doc["totals"]["by_status"] == {"pending": 4}
    assert doc["totals"]["flops"] == sum(t["flops"] for t in doc["trials"]) and doc["stages"] == []
    assert {"trial_id", "model", "epochs", "params", "tokens_seen", "flops", "status"} <= set(doc["trials"][0])


def test_run_json_summary_and_status_json(ray_local, write_spec, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", str(write_spec(LINREG)), "--json-summary"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # stdout is the one document; progress went to stderr
    assert doc["exit_code"] == 0 and doc["counts"] == {"done": 4, "diverged": 0, "failed": 0, "pending": 0}
    assert len(doc["trials"]) == 4 and all(t["val_loss"] > 0 for t in doc["trials"])
    assert doc["report"].endswith("index.html") and "done," in captured.err

    assert main(["status", str(results), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["trials"] == 4 and status["counts"] == {"COMPLETED": 4} and status["unreadable"] == []
    assert sorted(r["trial_id"] for r in status["runs"]) == sorted(t["trial_id"] for t in doc["trials"])


def closed_pipe(command: list[str]) -> subprocess.CompletedProcess:
    shell = " ".join([sys.executable, "-m", "scalegrid.cli", *command]) + " | head -1; exit ${PIPESTATUS[0]}"
    return subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120)


def test_a_closed_pipe_ends_plan_and_status_quietly(write_spec, tmp_path):
    # Outputs far larger than a pipe's buffer, so the writer meets the closed pipe mid-table.
    spec = write_spec({**LINREG, "lr": [round(0.001 * (i + 1), 3) for i in range(300)]})
    out = closed_pipe(["plan", str(spec)])
    assert out.stdout.split()[0] == "trial_id" and out.stdout.count("\n") == 1
    assert out.stderr == "" and out.returncode == CLOSED_PIPE

    results = tmp_path / "results"
    for i in range(600):
        row = {c: None for c in store.RUN_COLUMNS} | {
            "trial_id": f"{i:016x}", "sweep": "many", "model": "dims=64", "unique_tokens": 128, "epochs": 1, "lr": 0.05,
            "weight_decay": 0.0, "seed": i, "stage": "train", "status": "COMPLETED", "val_loss": 1.5, "wall_s": 1.0,
            "finished_at": dt.datetime.now(dt.timezone.utc),
        }
        store.write_run(layout(results), store.RunRow(**row))
    out = closed_pipe(["status", str(results)])
    assert out.stdout.startswith(f"{results}: 600 trials") and out.stdout.count("\n") == 1
    assert out.stderr == "" and out.returncode == CLOSED_PIPE
    out = closed_pipe(["status", str(results), "--json"])
    assert out.stdout == "{\n" and out.stderr == "" and out.returncode == CLOSED_PIPE
