"""Members -> ensemble evaluation -> teacher corpus -> students as one `scalegrid run`, on a real local Ray."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sweep_fixtures import TINY_LM
from scalegrid import load_ensembles, load_runs
from scalegrid.analysis.recipes import distillation
from scalegrid.cli import main


def files(directory) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns for p in directory.rglob("*") if p.is_file()}


def test_ensembles_and_students_extend_and_rerun(ray_local, write_spec, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", str(write_spec(TINY_LM)), "--no-report"]) == 0
    (plain,) = load_runs(results).itertuples()

    # An ensemble axis on an existing grid trains only the new member: member 0 is the old trial.
    assert main(["run", str(write_spec({**TINY_LM, "ensemble": {"members": [1, 2]}})), "--no-report"]) == 0
    assert "2 trials, 1 done, 1 to run" in capsys.readouterr().err
    ens = load_ensembles(results).set_index("members")
    assert list(ens.loc[1, "member_trial_ids"]) == [plain.trial_id]
    assert abs(ens.loc[1, "val_loss"] - plain.val_loss) < 1e-5  # k = 1 is the member itself
    members = load_runs(results).query("stage == 'train'")
    assert ens.loc[2, "val_loss"] <= members["val_loss"].mean() + 1e-9  # Jensen
    assert set(ens["stage"]) == {"ensemble"} and (ens["params"] == plain.params).all()

    # K = 3 and two students: one trained member more, the k = 3 row, a teacher corpus, two students.
    spec = write_spec({
        **TINY_LM,
        "ensemble": {"members": [1, 2, 3]},
        "distill": [
            {"teacher": {"members": 3}, "method": "token", "temperature": 2.0},
            {"teacher": {"members": 2}, "method": "sequence", "synthetic_weight": 0.5},
        ],
    })
    before = files(results / "ensembles")
    assert main(["run", str(spec), "--no-report"]) == 0
    err = capsys.readouterr().err
    assert "3 trials, 2 done, 1 to run" in err and "tokens/s" in err
    assert all(files(results / "ensembles")[name] == t for name, t in before.items())  # k = 1, 2 kept
    runs = load_runs(results)
    assert sorted(runs.loc[runs["stage"] == "ensemble", "members"]) == [1, 2, 3]
    students = runs[runs["stage"] == "distill"].set_index("distill_method")
    assert set(students["status"]) == {"COMPLETED"} and list(students.loc[["token", "sequence"], "members"]) == [3, 2]
    assert students.loc["token", "teacher_kind"] == "ensemble" and len(students.loc["token", "teacher_trial_ids"]) == 3
    assert students.loc["sequence", "tokens_seen"] == 2 * plain.tokens_seen  # real + as many generated
    (corpus,) = (results / "cache" / "teacher").iterdir()
    meta = json.loads((corpus / "meta.json").read_text())
    assert meta["tokens"] == 4096 and meta["tokens_per_s"] > 0
    retention = distillation(runs)
    assert len(retention) == 2 and np.isfinite(retention["loss_teacher"]).all()

    # A re-run redoes nothing: no trial, ensemble, corpus or student.
    stored = files(results / "runs") | files(results / "ensembles") | files(results / "cache" / "teacher")
    assert main(["run", str(spec), "--no-report"]) == 0
    assert "0 to run" in capsys.readouterr().err
    assert files(results / "runs") | files(results / "ensembles") | files(results / "cache" / "teacher") == stored
    assert main(["status", str(results)]) == 0
    assert "ensembles and students: 3 done" in capsys.readouterr().out


def test_failed_members_block_their_dependants(ray_local, write_spec, tmp_path, capsys):
    # seq_len 128 over 64 validation tokens passes the spec but raises inside the trainer
    broken = {
        **TINY_LM,
        "data": {**TINY_LM["data"], "validation": {"fraction": 0.1, "max_tokens": 64}},
        "train": {**TINY_LM["train"], "seq_len": 128},
        "ensemble": {"members": [1, 2]},
        "distill": {"teacher": {"members": 2}, "method": "token"},
    }
    results = tmp_path / "results"
    assert main(["run", str(write_spec(broken)), "--no-report"]) == 1  # a finished sweep, not a crash
    captured = capsys.readouterr()
    assert "blocked: teacher member" in captured.err and "blocked: member" in captured.err
    runs = load_runs(results)
    assert set(runs["status"]) == {"FAILED"} and set(runs["stage"]) == {"train"}  # nothing ran past them
    assert "validation split" in runs["error"].iloc[0]
    assert main(["status", str(results)]) == 0
    out = capsys.readouterr().out
    assert "ensembles and students: 2 blocked" in out and "FAILED" in out
    assert main(["plan", str(write_spec(broken))]) == 0
    assert "2 blocked" in capsys.readouterr().out


def test_stage_graph_members_overrides_and_spec_errors():
    from scalegrid.errors import UserError
    from scalegrid.orchestrator.planning.stage_graph import build
    from scalegrid.spec import load_sweep
    from scalegrid.storage import layout
    from scalegrid.data.identity import describe

    def graph(raw):
        spec = load_sweep(raw)
        return build(spec, describe(spec.data), layout("r"))

    plain = graph(TINY_LM).trials
    tuned = graph({**TINY_LM, "ensemble": {"members": [1, 2, 4], "epochs_scale": 2, "weight_decay_scale": 0.5}})
    (job,) = tuned.ensembles
    assert len(job.members) == 4 and {m.config.epochs for m in job.members} == {2}
    assert plain[0].trial_id in {t.trial_id for t in tuned.trials} and plain[0].trial_id not in job.member_ids
    assert len(tuned.trials) == 5 and tuned.needs_weights == set(job.member_ids)

    two_points = {**TINY_LM, "epochs": [1, 2], "distill": {"teacher": {"members": 2}}}
    with pytest.raises(UserError, match=r"distill\[0\]\.teacher: .* matches 2 grid points"):
        graph(two_points)
    one = graph({**two_points, "distill": {"teacher": {"epochs": 2, "members": 2}, "student": {"epochs": 1}}})
    (student,) = one.students
    assert student.config.epochs == 1 and [t.config.epochs for t in one.teachers[student.trial_id]] == [2, 2]
    with pytest.raises(UserError, match="need trainer lm"):
        load_sweep({**TINY_LM, "trainer": "linreg", "model": {"dims": 8}, "data": {"source": "gaussian", "unique_tokens": 64},
                    "ensemble": {"members": [2]}})


def test_logit_averaged_ensembles_are_rows_of_their_own(ray_local, write_spec, tmp_path):
    """`ensemble.combine: logits` on a finished probs ensemble trains nothing and writes one new
    row (k = 2; k = 1 is one model either way), with its own id and `combine`."""
    results = tmp_path / "results"
    assert main(["run", str(write_spec({**TINY_LM, "ensemble": {"members": [1, 2]}})), "--no-report"]) == 0
    probs = load_ensembles(results).set_index("members")
    runs_before = set(load_runs(results).query("stage == 'train'")["trial_id"])
    logits_spec = write_spec({**TINY_LM, "ensemble": {"members": [1, 2], "combine": "logits"}})
    assert main(["run", str(logits_spec), "--no-report"]) == 0
    ensembles = load_ensembles(results)
    assert set(load_runs(results).query("stage == 'train'")["trial_id"]) == runs_before
    (logits,) = ensembles[ensembles["combine"] == "logits"].itertuples()
    assert len(ensembles) == 3 and logits.members == 2 and logits.trial_id != probs.loc[2, "trial_id"]
    assert list(logits.member_trial_ids) == list(probs.loc[2, "member_trial_ids"])
    assert np.isfinite(logits.val_loss) and abs(logits.val_loss - probs.loc[2, "val_loss"]) > 1e-7
    assert probs.loc[1, "combine"] is None or pd.isna(probs.loc[1, "combine"])
