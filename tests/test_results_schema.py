"""The results schema is declared once (store.RunRow, store.CurveRow) and documented in
docs/results.md: the two agree, column by column, type by type."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from scalegrid import store

DOC = (Path(__file__).parents[1] / "docs" / "results.md").read_text()
TYPES = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(),
         "timestamp (UTC)": pa.timestamp("us", tz="UTC"), "list<string>": pa.list_(pa.string()),
         "list<float64>": pa.list_(pa.float64())}


def documented(heading: str) -> list[tuple[str, pa.DataType]]:
    section = DOC.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+?) \|", section, flags=re.M)
    return [(name, TYPES[kind]) for name, kind in rows]


def test_run_and_ensemble_columns_are_documented_in_order():
    assert documented("`runs/` and `ensembles/`") == [(f.name, f.type) for f in store.RUN_SCHEMA]


def test_curve_columns_are_documented_in_order():
    assert documented("`curves/`") == [(f.name, f.type) for f in store.CURVE_SCHEMA]


def test_eval_columns_are_documented_in_order():
    assert documented("`evals/`") == [(f.name, f.type) for f in store.EVAL_SCHEMA]


def results_with_every_stage(root: Path) -> dict[str, list[str]]:
    """A results directory written by the store's own writers: the train-stage trials, ensembles
    (k = 1..3, averaged by probabilities and by logits) and a token-level student of a real stage graph."""
    from scalegrid.orchestrator.planning.stage_graph import build
    from scalegrid.spec import load_sweep
    from scalegrid.storage import layout
    from scalegrid.data.identity import describe
    from scalegrid.trial import Status, TrialResult
    from sweep_fixtures import TINY_LM

    spec = load_sweep({**TINY_LM, "ensemble": {"members": [1, 2, 3], "combine": "logits"},
                       "distill": [{"teacher": {"members": 3}, "method": "token"}]})
    graph = build(spec, describe(spec.data), layout(root))
    info = {"scalegrid_version": "test", "git_commit": "test"}

    def result(trial, loss: float) -> TrialResult:
        c = trial.config
        curves = [{"step": s, "epoch": s / 8, "tokens_seen": s * 256, "train_loss": loss + 1, "val_loss": loss + 1 / (s + 1),
                   "lr": 3e-3, "wall_s": 0.1 * s} for s in (0, 8)]
        return TrialResult(Status.COMPLETED, c.num_params, c.num_params_nonembed, c.tokens_seen, c.estimated_flops,
                           val_loss=loss, best_val_loss=loss, train_loss=loss + 1, curves=curves)

    for trial in [*graph.trials, *graph.students]:
        store.write_curves(trial.results, trial.trial_id, result(trial, 2.0).curves)
        store.write_run(trial.results, store.trial_row(trial, result(trial, 2.0), wall_s=1.0, provenance=info))
    (job,) = graph.ensembles
    for combine in ("probs", "logits"):
        for k in range(1, 4):
            row = store.ensemble_row(list(job.members[:k]), 2.0 - k / 10, wall_s=1.0, error=None, provenance=info,
                                     device="cpu", combine=combine)
            store.write_ensemble(layout(root), row)
    return {"train": [t.trial_id for t in graph.trials], "distill": [s.trial_id for s in graph.students], "ensemble": job.row_ids}


def test_duckdb_and_polars_globs_see_every_column_of_every_stage(tmp_path):
    """Files of a results directory holding train, ensemble and distill rows all carry the whole
    schema, so a plain glob (no union_by_name) returns every column, with each stage's values."""
    import duckdb
    import polars as pl

    ids = results_with_every_stage(tmp_path)
    globs = [str(tmp_path / "runs" / "*.parquet"), str(tmp_path / "ensembles" / "*.parquet")]
    names = [f.name for f in store.RUN_SCHEMA]
    for glob in globs:
        assert duckdb.sql(f"select * from '{glob}'").columns == names
        assert pl.read_parquet(glob).columns == names
    assert duckdb.sql(f"select * from '{tmp_path}/curves/*.parquet'").columns == [f.name for f in store.CURVE_SCHEMA]

    both = duckdb.sql(f"select stage, count(*), count(teacher_id), count(member_trial_ids), count(combine) "
                      f"from read_parquet({globs}) group by stage order by stage").fetchall()
    assert both == [("distill", 1, 1, 0, 1), ("ensemble", 5, 0, 5, 4), ("train", 3, 0, 0, 0)]  # k = 1: one row, no combine
    frame = pl.concat([pl.read_parquet(glob) for glob in globs])
    student = frame.filter(pl.col("stage") == "distill").row(0, named=True)
    assert student["teacher_id"] == ids["ensemble"][-1] and student["combine"] == "logits"  # the logits ensemble of k = 3
    assert student["teacher_trial_ids"] == ids["train"]
    logits = frame.filter((pl.col("stage") == "ensemble") & (pl.col("combine") == "logits"))["trial_id"].to_list()
    assert sorted(logits) == sorted(ids["ensemble"][1:])  # k = 2, 3; the probs rows of k = 2, 3 have other ids
    assert frame.filter(pl.col("stage") == "ensemble")["trial_id"].n_unique() == 5  # k = 1 is one row either way


def test_search_columns_are_documented_in_order():
    assert documented("`search/`") == [(f.name, f.type) for f in store.SEARCH_SCHEMA]
