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
