"""Downstream accuracy against validation loss, on synthetic tables whose answer is known exactly."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from scalegrid.analysis.downstream import HOLDS, UNRESOLVED, VIOLATED, downstream_table, loss_ordering


def evals(rows: list[tuple[str, str, str, float, float]]) -> pd.DataFrame:
    """(model_id, task, metric, value, stderr) -> evals/ rows of COMPLETED evaluations."""
    return pd.DataFrame([
        {"eval_id": f"{m}-{t}", "model_id": m, "stage": "ensemble" if m.startswith("e") else "train", "status": "COMPLETED",
         "model": "llama-50k", "params": 50_000 if m != "b" else 200_000, "unique_tokens": 2048, "epochs": 4, "members": 1,
         "combine": None, "task": t, "metric": metric, "value": value, "stderr": stderr, "samples": 100, "truncated": 0,
         "finished_at": pd.Timestamp("2026-01-01", tz="UTC")}
        for m, t, metric, value, stderr in rows
    ])


RUNS = pd.DataFrame({"trial_id": ["a", "b", "e1"], "val_loss": [2.0, 1.5, 1.2]})


def test_the_table_takes_acc_norm_where_a_task_has_it_and_joins_the_losses():
    table = downstream_table(evals([
        ("a", "t1", "acc", 0.3, 0.01), ("a", "t1", "acc_norm", 0.4, 0.02), ("b", "t1", "acc", 0.5, 0.01),
        ("x", "t1", "acc", 0.9, 0.01),  # a model the runs do not know: its loss is NaN
    ]), RUNS)
    by_model = table.set_index("model_id")
    assert by_model.loc["a", "metric"] == "acc_norm" and by_model.loc["a", "accuracy"] == 0.4
    assert by_model.loc["b", "metric"] == "acc" and by_model.loc["b", "val_loss"] == 1.5
    assert math.isnan(by_model.loc["x", "val_loss"])
    assert downstream_table(pd.DataFrame(columns=["status"]), RUNS).empty  # nothing evaluated yet


@pytest.mark.parametrize(("accuracies", "verdict", "concordant", "discordant"), [
    ((0.30, 0.50, 0.70), HOLDS, 3, 0),  # lower loss, higher accuracy, every gap 0.2 >> 1.96 * sqrt(2) * 0.01
    ((0.30, 0.50, 0.31), VIOLATED, 1, 1),  # b beats a, but e1 (lowest loss) is beaten by b; a vs e1 within noise
    ((0.50, 0.51, 0.52), UNRESOLVED, 0, 0),  # every gap 0.01 or 0.02 < 1.96 * sqrt(2) * 0.01 = 0.0277
])
def test_the_ordering_verdict_counts_only_gaps_beyond_noise(accuracies, verdict, concordant, discordant):
    rows = [(m, "t1", "acc", acc, 0.01) for m, acc in zip(["a", "b", "e1"], accuracies)]
    (row,) = loss_ordering(downstream_table(evals(rows), RUNS)).to_dict("records")
    assert (row["verdict"], row["concordant"], row["discordant"], row["pairs"]) == (verdict, concordant, discordant, 3)
    signs = [math.copysign(1, hi - lo) if hi != lo else 0 for lo, hi in [(accuracies[0], accuracies[1]),
                                                                          (accuracies[0], accuracies[2]),
                                                                          (accuracies[1], accuracies[2])]]
    assert row["kendall_tau"] == pytest.approx(sum(signs) / 3)
