"""The wsd epochs axis as one trunk: every branch equals its independent run, trunk states are
consumed, and a branch whose trunk state is gone trains from scratch to the same result."""

from __future__ import annotations

import pytest

from scalegrid.grid import trial_id
from scalegrid.trainers import checkpoint, lm, trunks, vector_groups

WSD = {"schedule": "wsd", "warmup_fraction": 0.25, "eval_every": 3}


def axis(lm_trial, epochs, **train):
    out = []
    for e in epochs:
        trial = lm_trial(epochs=e, unique_tokens=1024, train={**WSD, **train})  # 4 steps per epoch
        out.append(trial.model_copy(update={"trial_id": trial_id(trial.config)}))
    return out


def test_branches_equal_independent_runs_and_a_lost_trunk_is_retrained(lm_trial):
    trials = axis(lm_trial, [1, 2, 4])
    (group,) = vector_groups(trials)
    assert group == trials and len({trunks.trunk_key(t.config) for t in trials}) == 1
    assert [trunks.branch_step(t.config) for t in trials] == [3, 6, 13]  # 4E - round(0.2 * 4E)
    directory = trials[0].results.trunk(trunks.trunk_key(trials[0].config))
    branched = lm.train_many(trials)
    assert [r.resumed_from_step for r in branched] == [3, 6, 0]  # the shorter ones branched
    assert checkpoint.steps(directory) == []  # each trunk state removed once its branch finished
    independent = [lm.train(t, lambda row: None) for t in trials]
    for b, i in zip(branched, independent):
        assert b.status == i.status == "COMPLETED" and b.tokens_seen == i.tokens_seen
        assert b.val_loss == pytest.approx(i.val_loss, abs=1e-5) and b.train_loss == pytest.approx(i.train_loss, abs=1e-5)
        assert [r["step"] for r in b.curves] == [r["step"] for r in i.curves]
    # the trunk states are gone: the 2-epoch trial trains from scratch, saving the 1-epoch one's
    again = lm.train_many(trials[:2])
    assert [r.resumed_from_step for r in again] == [3, 0]
    assert [r.val_loss for r in again] == pytest.approx([r.val_loss for r in independent[:2]], abs=1e-5)


def test_only_fixed_wsd_lm_trials_share_a_trunk(lm_trial):
    assert trunks.trunk_key(lm_trial(train={"schedule": "cosine"}).config) is None
    stop = {"stop": {"rule": "val_curve", "gamma": 0.1}}
    assert trunks.trunk_key(lm_trial(train={**WSD, **stop}).config) is None
    a, b = axis(lm_trial, [1, 2]), axis(lm_trial, [1], decay_fraction=0.3)
    assert trunks.trunk_key(a[0].config) == trunks.trunk_key(a[1].config) != trunks.trunk_key(b[0].config)
    assert len(vector_groups([*a, *b])) == 2
