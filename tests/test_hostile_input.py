"""Hostile input, second round (issue 25): what a user controls is bounded, refused in one line
with exit 2 (or 1 where the input is not at fault), and leaves the results directory as it was."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from sweep_fixtures import LINREG, TINY_LM
from scalegrid import signals
from scalegrid.cli import main
from scalegrid.data.checks import glob_reaches
from scalegrid.spec.yaml_file import MAX_VALUES


def one_line_error(capsys, argv: list[str], code: int = 2) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("scalegrid: error: "), err
    return err[0]


def bomb(levels: int = 8) -> str:
    """A kilobyte of YAML whose aliases expand to 9^levels values."""
    lines = ["  a: &a [9, 9, 9, 9, 9, 9, 9, 9, 9]"]
    for i in range(1, levels + 1):
        name, previous = chr(ord("a") + i), chr(ord("a") + i - 1)
        lines.append(f"  {name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    return "bombs:\n" + "\n".join(lines) + f"\nexclude: [{{lr: *{chr(ord('a') + levels)}}}]\n"


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({**LINREG, "results": str(tmp_path / "r")}) + bomb())
    assert len(spec.read_bytes()) < 2000 and 9**8 > MAX_VALUES
    line = one_line_error(capsys, ["plan", str(spec)])
    assert "aliases expand" in line and f"{MAX_VALUES:,}" in line and not (tmp_path / "r").exists()


def test_values_written_out_are_not_an_alias_bomb(tmp_path):
    """A long list written out (a grid of 120,000 seeds, under the trial cap) is no expansion."""
    from scalegrid.spec.yaml_file import read_yaml

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({**LINREG, "seed": list(range(120_000))}, default_flow_style=True))
    assert len(spec.read_bytes()) < 1 << 20 and len(read_yaml(spec)["seed"]) == 120_000


def test_duplicate_keys_and_oversized_files_are_refused(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(LINREG) + "epochs: [4]\n")
    assert "the key 'epochs' is given twice" in one_line_error(capsys, ["plan", str(spec)])
    spec.write_text(yaml.safe_dump(LINREG) + "# padding\n" * 200_000)
    assert "over 1 MiB" in one_line_error(capsys, ["plan", str(spec)])


@pytest.mark.parametrize("make, needle", [
    (lambda p: p.mkdir(), "the spec file is a directory"),
    (lambda p: os.mkfifo(p), "not a regular file (a FIFO)"),
    (lambda p: (p.symlink_to(p.with_name("other")), p.with_name("other").symlink_to(p)), "a symlink loop"),
    (lambda p: None, "spec file not found"),
])
def test_a_spec_path_that_is_not_a_file_says_what_it_is(make, needle, tmp_path, capsys):
    path = tmp_path / "spec.yaml"
    make(path)
    assert needle in one_line_error(capsys, ["plan", str(path)])


def test_results_at_the_root_empty_or_inside_a_data_glob_are_refused(write_spec, tmp_path, capsys):
    assert "the filesystem's root" in one_line_error(capsys, ["plan", str(write_spec({**LINREG, "results": "/"}))])
    assert "results: String should have at least 1 character" in one_line_error(capsys, ["plan", str(write_spec({**LINREG, "results": ""}))])
    assert "--results: an empty path" in one_line_error(capsys, ["plan", str(write_spec(LINREG)), "--results", ""])
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text('{"text": "hello"}\n')
    files = {**TINY_LM, "data": {**TINY_LM["data"], "source": "files", "files": [f"{corpus}/**/*.jsonl"]},
             "results": str(corpus / "results")}
    assert "is inside data.files[0]" in one_line_error(capsys, ["plan", str(write_spec(files))])
    assert not (corpus / "results").exists()


def test_which_globs_reach_a_directory():
    assert glob_reaches("/data/**/*.jsonl", Path("/data/run/results"))
    assert glob_reaches("/data/*/x.jsonl", Path("/data/results"))  # data/results/x.jsonl would match
    assert glob_reaches("/data/*", Path("/data/results"))  # the directory itself
    assert not glob_reaches("/data/*.jsonl", Path("/data/results"))
    assert not glob_reaches("/corpus/**/*.jsonl", Path("/data/results"))


def test_a_grid_over_the_limit_is_refused_before_it_is_expanded(write_spec, tmp_path, capsys):
    huge = {**LINREG, "seed": list(range(1000)), "lr": [i / 1000 for i in range(1, 201)], "results": str(tmp_path / "r")}
    line = one_line_error(capsys, ["plan", str(write_spec(huge))])  # 2 x 2 x 200 x 1000 = 800,000: refused at once
    assert "up to 800,000 trials, over the limit of 200,000" in line and "--max-trials 800000" in line
    small = {**LINREG, "seed": list(range(20)), "results": str(tmp_path / "r")}  # 80 trials
    assert "over the limit of 50" in one_line_error(capsys, ["plan", str(write_spec(small)), "--max-trials", "50"])
    assert main(["plan", str(write_spec(small)), "--max-trials", "80"]) == 0


@pytest.mark.parametrize("change, needle", [
    ({"data": {**TINY_LM["data"], "unique_tokens": 20}}, "sequences; use 32"),  # one value, not "use 32 or 32"
    ({"name": "a" * 101}, "(101 characters)"),
    ({"resources": {"gpus": 1, "gpu_memory_gb": 0.001}}, "resources.gpu_memory_gb: must be between 2 and 100000 (got 0.001)"),
    ({"resources": {"cpus": 1e-9}}, "resources.cpus: must be between 0.0001 and 4096"),
    ({"resources": {"gpus": 1.5}}, "resources.gpus: a share of one GPU (at most 1) or whole GPUs (got 1.5)"),
    ({"resources": {"gpus": 1e-7}}, "resources.gpus: must be 0 or at least 0.0001"),
    ({"exclude": [{"epochs": 1}]}, "exclude: its entries remove every grid point"),
])
def test_messages_say_what_is_wrong_once(change, needle, write_spec, tmp_path, capsys):
    spec = write_spec({**TINY_LM, **change})
    line = one_line_error(capsys, ["plan", str(spec)])
    assert needle in line and "use 32 or 32" not in line, line
    assert not (tmp_path / "results").exists()


def test_a_fit_error_names_its_law_once(tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("params,val_loss\n" + "".join(f"{n},inf\n" for n in (1e5, 2e5, 4e5, 8e5)))
    line = one_line_error(capsys, ["fit", "power-law", str(table)])
    assert line.count("power-law:") <= 1, line


def scalegrid(*args: str, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    """The `scalegrid` command as a user's shell starts it (its entry point, its own process)."""
    return subprocess.run(["scalegrid", *args], stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=300)


def test_output_that_cannot_be_written_is_one_line(write_spec, tmp_path):
    spec = write_spec(LINREG)
    (tmp_path / "results").mkdir()
    with open("/dev/full", "w") as full:
        for args in (["plan", str(spec)], ["plan", str(spec), "--json"], ["status", str(tmp_path / "results")]):
            done = scalegrid(*args, stdout=full)
            assert done.returncode == 1, done.stderr
            assert done.stderr.strip().splitlines() == ["scalegrid: error: cannot write the output (No space left on device); "
                                                        "write it somewhere with room"]


def session_of(driver: int, timeout: float = 120) -> str:
    """The Ray session directory of `driver`'s embedded Ray: read off its children's command lines."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == driver:
                    for arg in (proc / "cmdline").read_bytes().decode(errors="replace").split("\0"):
                        if arg.startswith("--session-dir="):
                            return arg.split("=", 1)[1]
            except (OSError, IndexError, ValueError):
                continue
        time.sleep(0.2)
    raise AssertionError(f"no embedded Ray under process {driver}")


def session_processes(session: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                command = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if session.encode() in command:
                found.append(command.decode(errors="replace")[:80])
    return found


def test_sighup_and_sigterm_raise_a_keyboard_interrupt_that_names_them():
    signals.install()
    for signum, code, said in ((signal.SIGHUP, 129, "stopped by SIGHUP"), (signal.SIGTERM, 143, "stopped by SIGTERM")):
        with pytest.raises(KeyboardInterrupt) as stopped:
            os.kill(os.getpid(), signum)
            time.sleep(5)  # the handler raises in this thread before this ends
        assert signals.exit_code(stopped.value) == code and signals.said(stopped.value) == said
    for signum in signals.STOPPING:
        signal.signal(signum, signal.SIG_DFL)


@pytest.mark.parametrize("signum, code, said", [(signal.SIGTERM, 143, "stopped by SIGTERM")])
def test_sigterm_stops_a_run_like_ctrl_c(signum, code, said, write_spec, tmp_path):
    spec = write_spec({**LINREG, "model": {"dims": 256}, "seed": list(range(12)), "epochs": [64],
                       "data": {"source": "gaussian", "unique_tokens": [4096]},
                       "train": {"batch_size": 1, "schedule": "constant", "warmup_fraction": 0}})
    proc = subprocess.Popen(["scalegrid", "run", str(spec), "--no-report"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list((tmp_path / "results" / "runs").glob("*.parquet")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    session = session_of(proc.pid)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    assert err.strip().splitlines()[-1] == f"scalegrid: {said}; re-run the same command to finish what is missing"
    assert "Traceback" not in err and "SIGTERM received" not in err
    time.sleep(2)
    assert not session_processes(session)
    assert main(["run", str(spec), "--no-report"]) == 0  # the re-run finishes what is missing
