"""Checkpoint and resume of the lm trainer: an interrupted trial ends exactly where an uninterrupted one does."""

from __future__ import annotations

import shutil

import pytest

from scalegrid.spec import FaultToleranceSpec
from scalegrid.trainers import checkpoint
from scalegrid.storage import layout
from scalegrid.trainers import get_trainer


class Interrupt(Exception):
    pass


def with_checkpoints(trial, results, trial_id, every=4, keep=2):
    corpus = trial.results.local(*trial.results.token_cache(trial.data_key))
    shutil.copytree(corpus, results / "cache" / "tokens" / trial.data_key, dirs_exist_ok=True)  # results hold their corpus
    return trial.model_copy(
        update={
            "trial_id": trial_id,
            "results": layout(results),
            "fault_tolerance": FaultToleranceSpec(checkpoint_every=every, keep_checkpoints=keep),
        }
    )


def test_resumed_trial_ends_with_the_uninterrupted_loss(lm_trial, tmp_path):
    # 2 epochs x 8 steps; eval every 4 steps, log every 3 (the loss window is mid-way at a checkpoint)
    base = lm_trial(epochs=2, train={"eval_every": 4, "log_every": 3}, weight_decay=0.1)
    whole = get_trainer("lm")(with_checkpoints(base, tmp_path / "a", "whole", every=1000), lambda row: None)
    assert whole.status == "COMPLETED" and whole.resumed_from_step == 0

    trial = with_checkpoints(base, tmp_path / "b", "cut", every=2, keep=2)

    def report(row):
        if row["step"] == 12:  # after the step-10 checkpoint, before the step-12 one
            raise Interrupt

    with pytest.raises(Interrupt):
        get_trainer("lm")(trial, report)
    assert checkpoint.steps(trial.checkpoint_dir) == [8, 10]  # only the newest `keep`
    folder = tmp_path / "b" / "checkpoints" / "cut"
    assert sorted(p.name for p in folder.iterdir()) == ["step-000000008", "step-000000010"]
    assert sorted(p.name for p in (folder / "step-000000010").iterdir()) == [".metadata", "__0_0.distcp", "trainer.pt"]  # no temporaries

    rows = []
    resumed = get_trainer("lm")(trial, rows.append)
    assert resumed.resumed_from_step == 10
    assert [r["step"] for r in rows] == [12, 16]  # the earlier evals come from the checkpoint
    assert [r["step"] for r in resumed.curves] == [4, 8, 12, 16]
    assert [r["resumed_from_step"] for r in resumed.curves] == [0, 0, 10, 10]  # which attempt evaluated each row
    assert resumed.tokens_seen == whole.tokens_seen
    assert abs(resumed.val_loss - whole.val_loss) <= 1e-6
    assert abs(resumed.train_loss - whole.train_loss) <= 1e-6
    assert [r["val_loss"] for r in resumed.curves] == pytest.approx(
        [r["val_loss"] for r in whole.curves], abs=1e-6
    )
    print(f"resume error: val {abs(resumed.val_loss - whole.val_loss):.3g}, train {abs(resumed.train_loss - whole.train_loss):.3g}")


def test_an_unreadable_newest_checkpoint_falls_back_to_the_one_before(lm_trial, tmp_path, capsys):
    trial = with_checkpoints(lm_trial(epochs=2), tmp_path, "bad", every=2, keep=4)

    def interrupt(row):
        if row["step"] == 12:
            raise Interrupt

    with pytest.raises(Interrupt):
        get_trainer("lm")(trial, interrupt)
    folder = tmp_path / "checkpoints" / "bad"
    assert checkpoint.steps(trial.checkpoint_dir) == [4, 6, 8, 10]
    # step 10: a shard cut short (found before training: `resume_point`); step 8: a shard whose
    # bytes are garbage at its full length (found when loading, by the trainer itself)
    shard10, shard8 = folder / "step-000000010" / "__0_0.distcp", folder / "step-000000008" / "__0_0.distcp"
    shard10.write_bytes(shard10.read_bytes()[:1000])
    shard8.write_bytes(b"\0" * shard8.stat().st_size)
    step, notes = checkpoint.resume_point(trial.checkpoint_dir)
    assert step == 8 and len(notes) == 1 and "step-000000010 is unreadable (ValueError: shard __0_0.distcp holds 1000 bytes" in notes[0]
    resumed = get_trainer("lm")(trial, lambda row: None)
    assert resumed.resumed_from_step == 6 and resumed.status == "COMPLETED"
    assert "step-000000008 is unreadable" in capsys.readouterr().err
    # Both are set aside, kept and never loaded again.
    assert sorted(p.name.split(".corrupt-")[0] for p in folder.glob("*.corrupt-*")) == ["step-000000008", "step-000000010"]
    (aside,) = folder.glob("step-000000010.corrupt-*")
    assert (aside / "__0_0.distcp").stat().st_size == 1000
