"""`scalegrid fit`: files and results directories in, one JSON document or a table out, and
one-line errors with exit code 2 for bad input."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalegrid import cli
from scalegrid.analysis import power_law
from scalegrid.commands import fit as fit_command

ANCHORS = Path(__file__).resolve().parents[1] / "data" / "anchors"  # public reference data, PROVENANCE.md there


def run_fit(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["fit", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _anchor(*parts: str) -> Path:
    path = ANCHORS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"anchor data not found at {path} (tests/data/anchors/ is part of the repository)")
    return path


def test_chinchilla_from_the_epoch_csv(capsys):
    code, out, _ = run_fit(
        capsys, "chinchilla", _anchor("chinchilla", "svg_extracted_data.csv"),
        "--params", "Model Size", "--flops", "Training FLOP", "--loss", "loss",
        "--drop-highest-loss", "5", "--bootstrap", "20", "--json",
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["kind"] == "chinchilla" and len(doc["fits"]) == 1
    fit = doc["fits"][0]
    assert set(fit) == {"group", "params", "ci", "objective", "n_points", "n_params", "converged", "degenerate",
                        "flags", "zero_width"}
    assert fit["n_params"] == 5 and fit["degenerate"] is False and fit["flags"] == []
    assert list(fit["params"]) == ["A", "B", "E", "alpha", "beta"]
    assert fit["n_points"] == 240 and fit["converged"] is True
    assert fit["params"]["E"] == pytest.approx(1.817, abs=0.01)
    assert fit["params"]["alpha"] == pytest.approx(0.3473, abs=0.005)
    lo, hi = fit["ci"]["E"]
    assert lo < fit["params"]["E"] < hi


def test_data_constrained_from_the_datablations_csv(capsys):
    code, out, _ = run_fit(
        capsys, "data-constrained",
        _anchor("datablations", "parametric_fit_runs_outliers_removed_182.csv"),
        "--tokens", "tokens", "--base-law", "muennighoff2023", "--bootstrap", "0", "--json",
    )
    assert code == 0
    params = json.loads(out)["fits"][0]["params"]
    assert params["R_star_D"] == pytest.approx(15.39, abs=0.3)
    assert params["R_star_N"] == pytest.approx(5.31, abs=0.2)


def _runs_table() -> pd.DataFrame:
    rows = []
    for d, (a, b, c) in {1e8: (10.0, 0.5, 2.0), 1e9: (8.0, 0.4, 1.8)}.items():
        for n in [1e4, 1e5, 1e6, 1e7, 1e8]:
            rows.append({"trial_id": f"t{n:g}-{d:g}", "stage": "train", "status": "COMPLETED",
                         "params": int(n), "unique_tokens": int(d), "tokens_seen": int(4 * d),
                         "epochs": 4, "val_loss": power_law(n, a, b, c)})
    rows.append({"trial_id": "failed", "stage": "train", "status": "FAILED", "params": 10**9,
                 "unique_tokens": 10**8, "tokens_seen": 4 * 10**8, "epochs": 4,
                 "val_loss": np.nan})
    return pd.DataFrame(rows)


def test_power_law_per_group_from_a_results_directory(tmp_path, capsys):
    runs = tmp_path / "results" / "runs"
    runs.mkdir(parents=True)
    table = _runs_table().assign(sweep="s")  # the columns every run file holds, named by its trial (store/validation.py)
    for _, row in table.iterrows():
        row.to_frame().T.astype(table.dtypes.to_dict()).to_parquet(runs / f"{row['trial_id']}.parquet")
    (runs / "broken.parquet").write_bytes(b"not parquet")
    (runs / ".hidden-tmp.parquet").write_bytes(b"half written")
    code, out, err = run_fit(capsys, "power-law", tmp_path / "results", "--x", "params",
                             "--by", "unique_tokens", "--bootstrap", "50", "--json")
    assert code == 0
    assert "skipping unreadable" in err and "broken.parquet" in err and ".hidden" not in err
    fits = json.loads(out)["fits"]
    assert [f["group"] for f in fits] == [{"unique_tokens": 100000000}, {"unique_tokens": 1000000000}]
    assert fits[0]["params"]["C"] == pytest.approx(2.0, rel=1e-4)
    assert fits[1]["params"]["C"] == pytest.approx(1.8, rel=1e-4)
    assert fits[0]["n_points"] == 5  # the FAILED run is not a point


def test_readable_table_without_json(tmp_path, capsys):
    path = tmp_path / "runs.parquet"
    _runs_table().to_parquet(path)
    code, out, _ = run_fit(capsys, "power-law", path, "--by", "unique_tokens", "--bootstrap", "20")
    assert code == 0
    assert "unique_tokens=100000000" in out and "95% interval" in out
    assert out.count("converged") == 2
    assert next(line for line in out.splitlines() if line.strip().startswith("C ")).split()[1] == "2"


def test_reuse_from_a_csv(tmp_path, capsys):
    """No seeds, no lr, no curves: the one-pass curve is the power law of the K = 1 rows."""
    rows = []
    for log_n in range(8, 13):
        n = np.exp(log_n)
        for k in range(1, 41):
            rows.append({"samples": n, "K": k,
                         "excess": power_law(n * min(k, 3 * log_n - 20), 30.0, 0.5, 0.1)})
    path = tmp_path / "reuse.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    code, out, _ = run_fit(capsys, "reuse", path, "--samples", "samples", "--epochs", "K",
                           "--loss", "excess", "--eps", "0.5", "--bootstrap", "20", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["reference"][0]["kind"] == "fitted" and doc["settings"]["eps"] == [0.5]
    log_law = next(f for f in doc["fits"] if f["law"] == "K* = A ln N + B")
    assert log_law["params"] == pytest.approx({"A": 6.0, "B": -40.0}, rel=1e-2)  # K* / (1 - eps)
    table = pd.DataFrame(doc["table"])
    assert {"samples", "K", "effective_reuse", "effective_reuse_lo", "effective_reuse_hi"} <= set(table.columns)
    assert table[table["K"] == 2]["effective_reuse"].to_numpy() == pytest.approx(2.0, rel=1e-3)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["chinchilla", "{csv}", "--params", "nope"], "missing column 'nope'"),
        (["power-law", "{csv}", "--x", "x", "--y", "y"], "values <= 0"),
        (["power-law", "{csv}", "--x", "x", "--y", "loss", "--drop-highest-loss", "9"],
         "cannot identify 3 free parameters"),
        (["power-law", "{bad}", "--x", "x"], "cannot read"),
        (["power-law", "{tmp}/table.xlsx", "--x", "x"], "unknown file type"),
        (["power-law", "{tmp}/missing.csv", "--x", "x"], "no such file"),
        (["power-law", "{empty}", "--x", "x"], "no runs/*.parquet"),
        (["reuse", "{csv}", "--eps", "0.1,2"], "--eps: each value must be in (0, 1)"),
        (["reuse", "{csv}", "--eps", "half"], "--eps: 'half' is not a comma-separated list"),
        (["reuse", "{csv}", "--samples", "x", "--epochs", "y", "--loss", "loss"], "one-pass rows (y == 1) at 3 or more"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, argv, message):
    csv = tmp_path / "table.csv"
    pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0], "y": [1.0, 0.0, 2.0, 3.0, 4.0],
                  "loss": [3.0, 2.5, 2.2, 2.1, 2.05]}).to_csv(csv, index=False)
    (tmp_path / "table.xlsx").write_bytes(b"x")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"garbage")
    (tmp_path / "empty").mkdir()
    subs = {"{csv}": str(csv), "{bad}": str(bad), "{tmp}": str(tmp_path),
            "{empty}": str(tmp_path / "empty")}
    args = []
    for a in argv:
        for k, v in subs.items():
            a = a.replace(k, v)
        args.append(a)
    code, out, err = run_fit(capsys, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("scalegrid: error: ")
    assert message in err


def test_cli_surface_is_frozen():
    parser = argparse.ArgumentParser()
    fit_command.register(parser.add_subparsers())
    sub = parser._subparsers._group_actions[0].choices["fit"]
    options = sorted(o for action in sub._actions for o in action.option_strings)
    assert options == sorted([
        "-h", "--help", "--x", "--y", "--by", "--params", "--tokens", "--flops", "--unique-tokens",
        "--samples", "--epochs", "--loss", "--objective", "--delta", "--base-law", "--eps",
        "--bootstrap", "--seed", "--level", "--max-rows", "--drop-highest-loss", "--stage", "--json",
    ])
    kinds = next(a for a in sub._actions if a.dest == "kind").choices
    assert list(kinds) == ["power-law", "chinchilla", "data-constrained", "reuse"]


@pytest.mark.parametrize("distinct", [1, 2, 3])
def test_a_law_without_enough_distinct_x_is_refused_not_converged(distinct, tmp_path, capsys):
    """Rows that share their x fit any curve: a 'converged' fit with zero-width intervals is a lie.
    Three distinct x are as many as A / x^B + C has parameters: the law passes through all of them."""
    x = np.resize(np.array([1e6, 4e6, 1.6e7])[:distinct], 8)
    table = tmp_path / "rows.csv"
    pd.DataFrame({"params": x, "val_loss": 2.0 + 10 / x**0.3 + np.arange(8) * 1e-3}).to_csv(table, index=False)
    code, out, err = run_fit(capsys, "power-law", table, "--bootstrap", "10")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert f"column 'params' has {distinct} distinct value" in err and "3 free parameters need at least 4" in err
