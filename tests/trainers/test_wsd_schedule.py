"""The warmup-stable-decay schedule: its values, its shared beginning, its spec fields and the ids it keeps."""

from __future__ import annotations

import pytest

from scalegrid.errors import UserError
from scalegrid.grid import identity
from scalegrid.spec import TrainSpec, parse_spec
from scalegrid.trainers.schedule import decay_start, decay_steps_after, lr_at

WSD = TrainSpec(schedule="wsd", warmup_fraction=0.25, decay_fraction=0.2, min_lr_ratio=0.1)


def test_wsd_warms_up_holds_then_decays_linearly_to_min():
    # 4 epochs of 10 steps: warmup round(0.25 * 10) = 2 steps (of one epoch), decay over the last 8 of 40.
    lrs = [lr_at(step, 40, 1.0, WSD, steps_per_epoch=10) for step in range(40)]
    assert lrs[:2] == pytest.approx([0.5, 1.0])
    assert lrs[2:32] == [1.0] * 30 and decay_start(40, WSD) == 32
    assert lrs[32:] == pytest.approx([1.0 - 0.9 * k / 8 for k in range(1, 9)])
    assert lrs[-1] == pytest.approx(0.1)


def test_every_length_shares_the_longest_runs_beginning_until_its_own_decay():
    longest = [lr_at(step, 160, 3e-3, WSD, steps_per_epoch=10) for step in range(160)]
    for epochs in (1, 2, 4, 8):
        total = 10 * epochs
        start = decay_start(total, WSD)
        assert [lr_at(step, total, 3e-3, WSD, steps_per_epoch=10) for step in range(start)] == longest[:start]
        assert start == total - round(0.2 * total)


def test_an_adaptive_decay_is_the_fixed_runs_decay():
    # a stop after 32 stable steps decays as long as the fixed 40-step run does
    assert decay_steps_after(32, WSD) == 40 - decay_start(40, WSD)


def test_wsd_needs_the_epochs_length():
    with pytest.raises(ValueError, match="steps_per_epoch"):
        lr_at(0, 10, 1.0, WSD)


def _spec(train: dict) -> dict:
    return {"name": "s", "trainer": "lm", "model": "llama-50k", "data": {"unique_tokens": 4096},
            "epochs": [1, 2], "lr": 1e-3, "train": train}


@pytest.mark.parametrize("train, message", [
    ({"schedule": "cosine", "decay_fraction": 0.3}, "decay_fraction is for schedule wsd"),
    ({"schedule": "wsd", "decay_fraction": 0.0}, r"train.decay_fraction\[0\]: must be > 0 and <= 1"),  # an axis: a list
    ({"schedule": "wsd", "decay_fraction": 0.9, "warmup_fraction": 0.2}, "exceed 1"),
    ({"schedule": "wsdd"}, "train.schedule"),
])
def test_bad_wsd_fields_are_one_line_errors(train, message):
    with pytest.raises(UserError, match=message) as err:
        parse_spec(_spec(train))
    assert "\n" not in str(err.value)


def test_decay_fraction_is_in_the_id_only_when_set():
    assert "decay_fraction" not in identity(TrainSpec())
    assert "decay_fraction" not in identity(TrainSpec(schedule="wsd"))
    assert identity(TrainSpec(schedule="wsd", decay_fraction=0.3))["decay_fraction"] == 0.3
