"""Injected faults through `scalegrid run` (tests/fault_matrix.py): each ends, after a re-run
without the fault, with every trial COMPLETED once, no row lost and nothing executed.
`benchmarks/bench_faults.py` runs these and the slower ones (kill -9 at tokenization, mid-trial
and in the report, a token cache deleted mid-sweep) and prints the table."""

from __future__ import annotations

import pytest

import fault_matrix
from scalegrid.cli import main


@pytest.mark.slow
def test_planted_checkpoints_run_nothing_and_are_set_aside(ray_local, tmp_path, capfd):
    def in_process(*args):
        code = main(list(args))
        out, err = capfd.readouterr()
        return code, out + err

    result = fault_matrix.planted_checkpoints(tmp_path, run=in_process)
    print(fault_matrix.table([result]))
    assert result.complete and result.rows_lost == 0 and result.trials_twice == 0, result


@pytest.mark.slow
def test_full_disk_mid_trial_is_one_line_and_the_rerun_finishes(tmp_path):
    """A real full filesystem: a tmpfs mounted for the test (it needs root, as CI has)."""
    result = fault_matrix.full_disk(tmp_path)
    if result is None:
        pytest.skip("this machine does not let the tests mount a tmpfs (needs root)")
    print(fault_matrix.table([result]))
    assert result.complete and result.rows_lost == 0 and result.trials_twice == 0, result


def test_a_run_that_cannot_fit_is_refused_before_writing(tmp_path):
    """The estimate (token cache, checkpoints, saved models, rows) against a 1 MiB filesystem."""
    with fault_matrix.tmpfs(tmp_path / "disk", 1) as mounted:
        if not mounted:
            pytest.skip("this machine does not let the tests mount a tmpfs (needs root)")
        spec = fault_matrix.write_spec(tmp_path, tmp_path / "disk" / "results")
        code, out = fault_matrix.scalegrid("run", str(spec), "--no-report")
        assert code == 1 and out.strip().splitlines()[-1].startswith("scalegrid: error: results: "), out
        assert "has 1.0 MiB free, but this run needs about" in out and "checkpoints" in out, out
        assert list((tmp_path / "disk").iterdir()) == []


def test_a_read_only_remount_mid_trial_is_one_line_and_the_rerun_finishes(tmp_path):
    result = fault_matrix.read_only_mid_trial(tmp_path)
    if result is None:
        pytest.skip("no tmpfs can be mounted on this machine (needs root)")
    assert result.complete and result.rows_lost == 0 and result.trials_twice == 0
