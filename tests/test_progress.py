"""Live progress: the ETA weighs trials by FLOPs; every evaluation reaches the driver as it happens;
a terminal gets a live table, anything else plain lines."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import threading
from types import SimpleNamespace

import terminal
from sweep_fixtures import TINY_LM
from scalegrid.cli import main
from scalegrid.orchestrator.display.progress import SweepProgress, _Live, duration


def row(step: int, tokens: int, wall_s: float, val_loss: float, flops_done: float) -> dict:
    return {"step": step, "epoch": step / 10, "tokens_seen": tokens, "wall_s": wall_s, "val_loss": val_loss, "flops_done": flops_done}


def test_durations_read_as_minutes_and_seconds():
    assert [duration(s) for s in (0, 8, 59.6, 68, 600, 3725)] == ["0s", "8s", "1m00s", "1m08s", "10m00s", "1h02m"]


def test_the_share_done_moves_between_evaluations_at_each_trial_own_speed():
    # A big trial (3e9 FLOPs) and a small one (1e9) on two slots. The big one's first row: 1e9
    # FLOPs in its first 10 s of training, so 1e8 FLOPs/s; 5 s after that row it has done 1.5e9.
    state = SweepProgress(total=2, planned_flops={"big": 3e9, "small": 1e9}, start=0.0, slots=2)
    state.started("big", "big llama-200k", now=1.0)
    state.started("small", "small llama-50k", now=1.0)
    state.result("big", row(100, 6400, 10.0, 3.25, 1e9), now=12.0)
    assert state.fraction_done(12.0) == 0.25
    assert state.fraction_done(17.0) == 1.5e9 / 4e9  # no new row, yet the share moved
    assert state.fraction_done(100.0) == 0.75  # at most all of the big trial: the small one has no speed yet
    assert state.line(17.0).startswith("0/2 done, 2 running; 38% of 4e+09 FLOPs; 640 tokens/s; elapsed 17s")
    assert state.running_lines() == ["  big llama-200k: step 100, epoch 10.00, val_loss 3.2500, 640 tokens/s", "  small llama-50k: starting"]

    # The next row: the trial's speed is what it did between its two rows, on the trainer's clock.
    state.result("big", row(200, 19200, 20.0, 3.0, 2e9), now=22.0)
    assert state.running["big"].tokens_per_s == 1280.0 and state.running["big"].flops_per_s == 1e8
    state.result("small", row(50, 3200, 5.0, 4.0, 5e8), now=22.0)  # the summary's tokens/s: the sum of the rows'
    assert state.tokens_per_s() == 1280.0 + 640.0 and "1.9k tokens/s" in state.line(22.0)


def test_the_eta_is_the_slot_time_left_and_never_less_than_a_running_trial_needs():
    # Two slots, four trials of one model: a (3e9 FLOPs) and b (1e9) start at 0, c and d wait.
    state = SweepProgress(total=4, planned_flops={"a": 3e9, "b": 1e9, "c": 1e9, "d": 1e9}, start=0.0, slots=2,
                          models={"a": "m", "b": "m", "c": "m", "d": "m"})
    state.started("a", "a", now=0.0)
    state.started("b", "b", now=0.0)
    state.result("a", row(100, 6400, 10.0, 3.0, 1e9), now=10.0)  # 1e8 FLOPs/s over its 10 s of training
    state.result("b", row(50, 3200, 5.0, 3.5, 5e8), now=10.0)  # 1e8 FLOPs/s, but 5 s of its 10 went to starting
    # 20 slot-seconds so far, 15 of them training: 2.5 s beyond training per trial started
    assert state.beyond_training_per_trial(10.0) == 2.5
    # a needs 20 s more, b 5 s, c and d 10 s each at the model's speed plus 2.5 s: over two slots
    assert state.eta_s(10.0) == (20 + 5 + 2 * (10 + 2.5)) / 2
    state.result("b", {"flops_done": 1e9, "n_COMPLETED": 1}, now=16.0)
    state.finished("b")
    state.started("c", "c", now=16.0)
    # 32 slot-seconds, 26 training (b's 10, a's 16 so far at its speed): 2 s per trial of three
    assert state.beyond_training_per_trial(16.0) == 2.0
    assert state.eta_s(16.0) == (14 + 10 + (10 + 2)) / 2  # a 14 s, c 10 s (running: its start behind it), d 12 s
    # A lone slow trial: the ETA is its own remaining time, not the slot time shared over the slots.
    lone = SweepProgress(total=1, planned_flops={"x": 1e9}, start=0.0, slots=4)
    lone.started("x", "x", now=0.0)
    lone.result("x", row(10, 640, 10.0, 4.0, 1e8), now=10.0)
    assert lone.eta_s(10.0) == 90.0 and "ETA 1m30s" in lone.line(10.0)
    lone.finished("x")
    assert lone.eta_s(100.0) is None


def test_outcomes_count_once_a_trial_has_finished():
    state = SweepProgress(total=2, planned_flops={"big": 3e9, "small": 1e9}, start=0.0)
    state.started("big", "big", now=0.0)
    state.started("small", "small", now=0.0)
    state.result("big", row(100, 6400, 4.5, 3.25, 1e9), now=5.0)
    state.result("big", {"flops_done": 3e9, "n_COMPLETED": 1}, now=19.0)
    assert state.line(20.0).startswith("0/2 done, 2 running")
    assert state.finished("big").val_loss == 3.25
    assert state.line(20.0).startswith("1/2 done, 1 running")
    state.finished("small", lost=True)  # out of retries without a row
    assert state.line(30.0).startswith("1/2 done, 0 running, 1 failed; 100% of 4e+09 FLOPs; elapsed 30s")


def test_a_trial_finishing_without_an_outcome_counts_as_failed_for_its_whole_pack():
    state = SweepProgress(total=5, planned_flops={"p+4": 5.0}, pack_sizes={"p+4": 5}, already_done=3, start=0.0)
    state.started("p+4", "p+4 (5 trials)", now=0.0)
    state.result("p+4", {"trials_done": 2, "flops_done": 2.0}, now=1.0)  # a pack's count: timed on the driver's clock
    assert state.fraction_done(1.0) == 0.4 and state.running["p+4"].flops_per_s == 2.0
    state.finished("p+4")
    assert state.line(1.0).startswith("3/8 done, 0 running, 5 failed")


def test_the_live_table_is_drawn_only_while_trials_run():
    from rich.console import Console
    from rich.text import Text

    state = SweepProgress(total=1, planned_flops={"x": 1.0}, start=0.0)
    live = SimpleNamespace(state=state, lock=threading.Lock())
    assert isinstance(_Live.render(live), Text)  # the summary line alone: no empty table header
    state.started("x", "x llama-50k")
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(_Live.render(live))
    drawn = console.export_text()
    assert "trial" in drawn and "x llama-50k" in drawn


def test_a_trial_that_starts_again_is_said_once_with_the_step_it_resumes_from():
    state = SweepProgress(total=1, planned_flops={"t": 1e9}, start=0.0)
    state.started("t", "t llama-50k")
    assert state.resumed("t", {**row(4, 256, 1.0, 4.0, 1e8), "resumed_from_step": 0}) is None  # a first attempt
    assert state.resumed("t", {"attempt": 2, "resumed_from_step": 8}) == "t llama-50k: attempt 2 resumes from its checkpoint at step 8"
    assert state.running_lines() == ["  t llama-50k: starting from step 8"]
    later = {**row(12, 768, 3.0, 3.5, 5e8), "resumed_from_step": 8}
    assert state.resumed("t", later) is None  # the rows of that attempt: said once
    state.result("t", later)
    assert state.running_lines() == ["  t llama-50k: step 12 (from 8), epoch 1.20, val_loss 3.5000, 256 tokens/s"]
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
    out = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, env=env, timeout=300)
    screen = out.stdout.decode(errors="replace")  # bytes: rich's carriage returns kept as they are
    assert out.returncode == 0, screen[-3000:]
    header = re.search(r"trial\W+step\W+epoch\W+val_loss\W+tokens/s", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen))
    assert header, screen[-3000:]  # the live table of running trials, redrawn in place
    assert re.search(r"\d+ llama-50k +\d+ +[\d.]+ +\d\.\d{4}", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)), screen[-3000:]
    left = terminal.screen(screen)  # what the user sees once it has ended: the history, then the summary
    assert not [line for line in left if re.search(r"trial\W+step\W+epoch", line)], "\n".join(left)  # no table left behind
    (finished,) = [line for line in left if line.startswith("1/1 done")]
    assert re.search(r"; elapsed \d+(m\d\ds|s)", finished) and "[0m" not in screen.replace("\x1b[0m", "")
    assert not [line for line in left if "WARNING" in line or "core_worker" in line]  # Ray's own messages: RESULTS/logs/


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
