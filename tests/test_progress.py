"""Live progress: the ETA weighs trials by FLOPs; every evaluation reaches the driver as it happens;
a terminal gets a live table, anything else plain lines."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from sweep_fixtures import TINY_LM
from scalegrid.cli import main
from scalegrid.orchestrator.display.progress import SweepProgress


def row(step: int, tokens: int, wall_s: float, val_loss: float, flops_done: float) -> dict:
    return {"step": step, "epoch": step / 10, "tokens_seen": tokens, "wall_s": wall_s, "val_loss": val_loss, "flops_done": flops_done}


def test_eta_is_flops_left_at_the_flop_rate_so_far():
    # A big trial (3e9 FLOPs) and a small one (1e9): a quarter of the FLOPs in 10 s leaves 30 s,
    # though no trial is done (a count-based ETA has nothing to say yet).
    state = SweepProgress(total=2, planned_flops={"big": 3e9, "small": 1e9}, start=0.0)
    state.started("big", "big llama-200k")
    state.started("small", "small llama-50k")
    state.result("big", row(0, 0, 0.5, 5.0, 0.0))
    state.result("big", row(100, 6400, 4.5, 3.25, 1e9))
    assert state.eta_s(10.0) == 30.0
    line = state.line(10.0)
    assert line.startswith("[0m10s] 0/2 done, 2 running, 0 failed, 0 diverged") and "25% of 4e+09 FLOPs" in line
    assert "ETA 0m30s" in line and "640 tokens/s" in line  # 6400 tokens in this run's 10 s
    assert state.running_lines() == ["  big llama-200k: step 100, epoch 10.00, val_loss 3.2500, 1.6k tokens/s", "  small llama-50k: starting"]

    # The big trial's outcome counts once it has finished, not when it is reported.
    state.result("big", {"flops_done": 3e9, "n_COMPLETED": 1})
    assert state.line(20.0).startswith("[0m20s] 0/2 done, 2 running")
    assert state.finished("big").val_loss == 3.25
    assert state.line(20.0).startswith("[0m20s] 1/2 done, 1 running") and state.eta_s(20.0) == 20.0 / 3
    state.finished("small", lost=True)  # out of retries without a row
    assert state.line(30.0).startswith("[0m30s] 1/2 done, 0 running, 1 failed") and state.eta_s(30.0) is None


def test_a_trial_finishing_without_an_outcome_counts_as_failed_for_its_whole_pack():
    state = SweepProgress(total=5, planned_flops={"p+4": 5.0}, pack_sizes={"p+4": 5}, already_done=3, start=0.0)
    state.started("p+4", "p+4 (5 trials)")
    state.result("p+4", {"trials_done": 2, "flops_done": 2.0})
    assert state.fraction_done == 0.4
    state.finished("p+4")
    assert state.line(1.0).startswith("[0m01s] 3/8 done, 0 running, 5 failed")


def test_a_trial_that_starts_again_is_said_once_with_the_step_it_resumes_from():
    state = SweepProgress(total=1, planned_flops={"t": 1e9}, start=0.0)
    state.started("t", "t llama-50k")
    assert state.resumed("t", {**row(4, 256, 1.0, 4.0, 1e8), "resumed_from_step": 0}) is None  # a first attempt
    assert state.resumed("t", {"attempt": 2, "resumed_from_step": 8}) == "t llama-50k: attempt 2 resumes from its checkpoint at step 8"
    assert state.running_lines() == ["  t llama-50k: starting from step 8"]
    later = {**row(12, 768, 3.0, 3.5, 5e8), "resumed_from_step": 8}
    assert state.resumed("t", later) is None  # the rows of that attempt: said once
    state.result("t", later)
    assert state.running_lines() == ["  t llama-50k: step 12 (from 8), epoch 1.20, val_loss 3.5000"]
    # its workers restarted inside the attempt: the first row from another checkpoint says so
    assert state.resumed("t", {**row(16, 1024, 4.0, 3.4, 7e8), "resumed_from_step": 12}) == "t llama-50k: resumes from its checkpoint at step 12"
    assert state.resumed("t", {"attempt": 3, "resumed_from_step": 0}) == "t llama-50k: attempt 3 starts from scratch"


def test_each_evaluation_reaches_the_driver_as_it_happens(ray_local, write_spec, capsys):
    spec = write_spec({**TINY_LM, "seed": [0, 1], "train": {**TINY_LM["train"], "eval_every": 4}})
    assert main(["run", str(spec), "--no-report", "--max-concurrent", "1"]) == 0
    err = capsys.readouterr().err
    finished = [line for line in err.splitlines() if "done," in line and "llama-50k: val_loss" in line]
    assert len(finished) == 2, err  # each finish names the trial and its last evaluation, reported while it ran
    assert all("% of" in line and "FLOPs" in line for line in finished)
    assert any("ETA" in line for line in err.splitlines()), err


def test_a_terminal_gets_a_live_table(write_spec, tmp_path):
    """Under a pseudo-terminal `run` draws the running trials' table (rich); the log keeps each
    start and finish."""
    # Twelve epochs: the trial runs for several of the table's redraws (twice a second), with a
    # loss in each, however fast the machine (one epoch took 0.3 s on CI and was never drawn).
    spec = write_spec({**TINY_LM, "epochs": 12, "train": {**TINY_LM["train"], "eval_every": 2}})
    env = {**os.environ, "COLUMNS": "160", "TERM": "xterm"}
    command = f"{sys.executable} -m scalegrid.cli run {spec} --no-report"
    out = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:]
    screen = out.stdout
    header = re.search(r"trial\W+step\W+epoch\W+val_loss\W+tokens/s", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen))
    assert header, screen[-3000:]  # the live table of running trials, redrawn in place
    assert re.search(r"\d+ llama-50k +\d+ +[\d.]+ +\d\.\d{4}", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)), screen[-3000:]
    assert "1/1 done" in screen


def test_a_searched_run_shows_the_live_table_and_its_cells(write_spec, tmp_path):
    """A search runs under the same launcher as a grid: the same live table of running trials, and
    the summary line ends with the cells' states."""
    spec = write_spec({**TINY_LM, "epochs": None, "lr": None, "train": {**TINY_LM["train"], "eval_every": 2},
                       "search": {"axes": {"epochs": [4, 8], "lr": [1e-3, 3e-3]}, "start": {"epochs": 8, "lr": 3e-3}}})
    env = {**os.environ, "COLUMNS": "200", "TERM": "xterm"}
    command = f"{sys.executable} -m scalegrid.cli run {spec} --no-report --max-concurrent 1"
    out = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:]
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.stdout)
    assert re.search(r"trial\W+step\W+epoch\W+val_loss\W+tokens/s", screen), screen[-3000:]
    assert re.search(r"\d+ llama-50k +\d+ +[\d.]+ +\d\.\d{4}", screen), screen[-3000:]
    assert re.search(r"search: 1 cells \(1 (certified|at edge)\)", screen), screen[-3000:]
