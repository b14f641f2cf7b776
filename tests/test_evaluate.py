"""The evaluate stage end to end on a real local Ray and the real lm-evaluation-harness, offline:
a local task (tests/data/eval_tasks), tiny trained models, the evals/ table, re-runs and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep_fixtures import TINY_LM, tree_digest
from scalegrid import load_evals, store
from scalegrid.cli import main

TASKS = str(Path(__file__).parent / "data" / "eval_tasks")
SPEC = {
    **TINY_LM,
    "epochs": [1, 2],
    "train": {**TINY_LM["train"], "seq_len": 64},
    "ensemble": {"members": [1, 2], "where": [{"epochs": 1}]},
    "distill": [{"teacher": {"members": 2, "epochs": 1}, "method": "token"}],
    "evaluate": {"tasks": ["tiny_facts"], "include": [TASKS], "limit": 12, "batch_size": 16},
}


def mtimes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in directory.iterdir()} if directory.exists() else {}


def test_each_model_is_evaluated_once_and_a_new_task_only_where_missing(ray_local, write_spec, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", str(write_spec(SPEC))]) == 0
    evals = load_evals(results)
    assert set(evals["status"]) == {"COMPLETED"} and set(evals["metric"]) == {"acc", "acc_norm"}
    by_stage = evals[evals["metric"] == "acc"].set_index("stage")
    assert sorted(by_stage.index) == ["distill", "ensemble", "train"]  # the cell's best, the ensemble of 2, the student
    assert by_stage.loc["ensemble", "members"] == 2 and by_stage.loc["ensemble", "combine"] == "probs"
    assert (by_stage["samples"] == 12).all() and (by_stage["max_length"] == 64).all() and (by_stage["truncated"] == 0).all()
    runs = store.load_runs(results).set_index("trial_id")
    best = runs[(runs["stage"] == "train") & (runs["member"] == 0)]["val_loss"].idxmin()
    assert by_stage.loc["train", "model_id"] == best  # the lower validation loss of the cell's two points
    report = (results / "report" / "report.md").read_text()
    assert "Downstream accuracy" in report and "ordering by validation loss" in report

    # A re-run evaluates nothing: no evals file is written again.
    before = mtimes(results / "evals")
    assert main(["run", str(write_spec(SPEC)), "--no-report"]) == 0
    assert "3 downstream evaluations, 3 done, 0 to run" in capsys.readouterr().err
    assert mtimes(results / "evals") == before

    # A new task evaluates the same three models on it, and nothing else.
    more = {**SPEC, "evaluate": {**SPEC["evaluate"], "tasks": ["tiny_facts", "tiny_facts_again"]}}
    assert main(["run", str(write_spec(more)), "--no-report"]) == 0
    after = mtimes(results / "evals")
    assert len(after) == 6 and {k: after[k] for k in before} == before
    again = load_evals(results).query("task == 'tiny_facts_again' and metric == 'acc'").set_index("model_id")["value"]
    first = load_evals(results).query("task == 'tiny_facts' and metric == 'acc'").set_index("model_id")["value"]
    assert again.sort_index().tolist() == first.sort_index().tolist()  # the same questions: the same scores
    assert main(["status", str(results)]) == 0
    assert "evaluations: 6 done" in capsys.readouterr().out


def test_the_evals_table_reads_with_one_glob(ray_local, write_spec, tmp_path):
    """Every evals/ file carries the whole schema: DuckDB and polars read them with a plain glob."""
    import duckdb
    import polars as pl

    spec = {k: v for k, v in SPEC.items() if k not in ("ensemble", "distill")}
    spec = {**spec, "epochs": 1, "evaluate": {**SPEC["evaluate"], "limit": 4, "which": ["trials"]}}
    assert main(["run", str(write_spec(spec)), "--no-report"]) == 0
    glob = str(tmp_path / "results" / "evals" / "*.parquet")
    names = [f.name for f in store.EVAL_SCHEMA]
    assert duckdb.sql(f"select * from '{glob}'").columns == names and pl.read_parquet(glob).columns == names


@pytest.mark.parametrize(("evaluate", "extra", "message"), [
    ({"tasks": ["tiny_factz"], "include": [TASKS]}, {}, "unknown task 'tiny_factz' (closest: tiny_facts"),
    ({"tasks": ["ai2_arc"]}, {}, "ai2_arc is a tag of lm-evaluation-harness tasks (its tasks: arc_challenge, arc_easy)"),
    ({"tasks": ["gsm8k"]}, {}, "gsm8k generates text (output_type generate_until)"),
    ({"tasks": ["tiny_facts"], "include": ["no/such/dir"]}, {}, "evaluate.include[0]: no/such/dir is not a directory"),
    ({"tasks": ["tiny_facts"], "include": [TASKS]}, {"keep_weights": False},
     "evaluate.which: best needs the trained models' weights, which keep_weights: false does not keep"),
    ({"tasks": ["tiny_facts"], "include": [TASKS], "which": ["ensembles"]}, {},
     "evaluate.which: ensembles, but the spec has no ensemble: section"),
])
def test_bad_evaluate_input_is_one_line_at_plan(write_spec, tmp_path, capsys, evaluate, extra, message):
    results = tmp_path / "results"
    before = tree_digest(results)
    assert main(["plan", str(write_spec({**TINY_LM, **extra, "evaluate": evaluate}))]) == 2
    # only scalegrid's own lines: an earlier test's Ray workers may still forward their output here
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("scalegrid:")]
    assert len(err) == 1 and err[0].startswith("scalegrid: error:") and message in err[0], err
    assert tree_digest(results) == before
