"""Fits a researcher can trust: a law is fitted only where the points identify it, a degenerate law
is marked and never headlined, `scalegrid fit` and the report give the same numbers, and seed noise
enters every mean, interval and ordering (checked against hand computations)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from scalegrid import cli
from scalegrid.analysis import best_runs, compare, orderings, param_scaling, pooled_sd, power_law
from scalegrid.analysis.least_squares import seed_resampled
from scalegrid.report import write_report
from synthetic_results import _tid, base_row, write_run

BUDGET = 8192


def write_sizes(results, losses: dict[float, list[float]], budget: int = BUDGET) -> None:
    """One training point per size, with one run per seed (member 0, 1, ...)."""
    for n, seeds in losses.items():
        for m, loss in enumerate(seeds):
            write_run(results, base_row(
                trial_id=_tid("verdicts", n, budget, m), model=f"m{n:g}", params=int(n), params_nonembed=int(n),
                unique_tokens=budget, epochs=8, tokens_seen=8 * budget, lr=3e-3, weight_decay=0.1, member=m,
                val_loss=loss, best_val_loss=loss, train_loss=loss, flops=6.0 * n * 8 * budget, wall_s=1.0,
                config_json=json.dumps({"model": n, "member": m} if m else {"model": n}),
            ))


def report_of(results, bootstrap: int = 200) -> dict:
    index = write_report(results, bootstrap=bootstrap, workers=0)
    return json.loads((index.parent / "fits.json").read_text())


def fit_cli(capsys, results, *extra: str) -> tuple[int, str, str]:
    code = cli.main(["fit", "power-law", str(results), "--by", "unique_tokens", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_three_sizes_are_refused_by_the_cli_and_stated_by_the_report_with_the_points_drawn(tmp_path, capsys):
    """The issue's points: a three-parameter law through three sizes fits exactly (zero-width 'intervals')."""
    results = tmp_path / "results"
    write_sizes(results, {5816: [1.395], 14960: [1.343], 43232: [1.323]})
    code, out, err = fit_cli(capsys, results)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "3 points cannot identify 3 free parameters" in err
    fits = report_of(results)
    params = fits["sections"]["params"]
    assert params["status"] == "ok" and params["fits"]["power_laws"] == []
    assert any("4 or more model sizes" in note and "three free parameters" in note for note in params["notes"])
    assert (results / "report" / "figures" / "params_scaling.png").is_file()  # the points, still drawn
    assert not any("asymptote" in h for h in fits["sections"]["summary"]["fits"]["headline"])


def test_a_flat_set_of_losses_is_degenerate_never_headlined_and_the_cli_agrees(tmp_path, capsys):
    rng = np.random.default_rng(0)
    sizes = [1e5, 3e5, 1e6, 3e6, 1e7, 3e7]
    results = tmp_path / "results"
    write_sizes(results, {n: [2.2 + rng.normal(0, 0.01)] for n in sizes})
    fits = report_of(results)
    law = fits["sections"]["params"]["fits"]["power_laws"][0]
    assert law["degenerate"] is True and law["flags"]
    assert not any("asymptote" in h for h in fits["sections"]["summary"]["fits"]["headline"])
    markdown = (results / "report" / "report.md").read_text()
    assert "the law is degenerate" in markdown and "does not fall with parameters here" in markdown
    code, out, _ = fit_cli(capsys, results, "--bootstrap", "200", "--json")
    assert code == 0
    fit = json.loads(out)["fits"][0]
    assert fit["degenerate"] is True and fit["flags"] == law["flags"]
    code, out, _ = fit_cli(capsys, results, "--bootstrap", "200")
    assert "DEGENERATE: " in out


def test_the_cli_and_the_report_fit_the_same_points_to_the_same_numbers(tmp_path, capsys):
    rng = np.random.default_rng(1)
    sizes = np.geomspace(1e5, 1e8, 6)
    results = tmp_path / "results"
    write_sizes(results, {n: [power_law(n, 40.0, 0.3, 1.9) * math.exp(rng.normal(0, 0.003))] for n in sizes})
    law = report_of(results, bootstrap=300)["sections"]["params"]["fits"]["power_laws"][0]
    code, out, _ = fit_cli(capsys, results, "--bootstrap", "300", "--json")
    assert code == 0
    fit = json.loads(out)["fits"][0]
    assert fit["group"] == {"unique_tokens": BUDGET} and fit["degenerate"] is False and law["degenerate"] is False
    for name in ("A", "B", "C"):  # literally the same computation on the same points: equal to rounding
        assert fit["params"][name] == pytest.approx(law[name], rel=1e-12)
        assert fit["ci"][name] == pytest.approx([law[f"{name}_lo"], law[f"{name}_hi"]], rel=1e-12)


SEEDS = {1e5: [2.30, 2.36, 2.27], 1e6: [2.10, 2.02, 2.15], 1e7: [2.00, 2.07, 1.98], 1e8: [1.97, 1.95, 2.04],
         1e9: [1.93, 1.99, 1.95]}


def test_seed_means_spreads_and_orderings_against_a_hand_computation(tmp_path):
    results = tmp_path / "results"
    write_sizes(results, SEEDS)
    from scalegrid import load_runs

    best = best_runs(load_runs(results))
    for n, seeds in SEEDS.items():  # the means, spreads and counts, by hand
        row = best[best["params"] == n].iloc[0]
        assert row["val_loss"] == pytest.approx(np.mean(seeds), rel=1e-12)
        assert row["val_loss_sd"] == pytest.approx(np.std(seeds, ddof=1), rel=1e-12)
        assert row["seeds"] == 3 and tuple(row["seed_losses"]) == pytest.approx(tuple(seeds))
    pooled = math.sqrt(np.mean([np.var(s, ddof=1) for s in SEEDS.values()]))  # equal dof: the mean variance
    assert pooled_sd(best) == pytest.approx(pooled, rel=1e-12)
    table = orderings(best, sd=pooled).set_index("from")
    for a, b in zip(sorted(SEEDS), sorted(SEEDS)[1:]):
        diff = np.mean(SEEDS[b]) - np.mean(SEEDS[a])
        own = math.sqrt((np.var(SEEDS[a], ddof=1) + np.var(SEEDS[b], ddof=1)) / 2)  # the two points' own spread
        stderr = own * math.sqrt(2 / 3)
        assert table.loc[a, "difference"] == pytest.approx(diff, rel=1e-12)
        assert table.loc[a, "stderr"] == pytest.approx(stderr, rel=1e-12)
        assert table.loc[a, "verdict"] == ("lower" if diff < -2 * stderr else "within noise")
    assert table["verdict"].tolist() == ["lower", "within noise", "within noise", "within noise"]
    assert compare([2.0], [2.1], math.nan).verdict == "noise unknown"


def test_a_fit_to_seed_means_redraws_the_seeds_in_every_resample(tmp_path):
    from scalegrid import load_runs

    results = tmp_path / "results"
    write_sizes(results, SEEDS)
    best = best_runs(load_runs(results))
    with_seeds = param_scaling(best, bootstrap=400).iloc[0]
    means_only = param_scaling(best.drop(columns=["seed_losses"]), bootstrap=400).iloc[0]
    for name in ("A", "B", "C"):  # the law is fitted to the means either way; only the intervals differ
        assert with_seeds[name] == pytest.approx(means_only[name], rel=1e-9)
    wider = sum((with_seeds[f"{p}_hi"] - with_seeds[f"{p}_lo"]) > (means_only[f"{p}_hi"] - means_only[f"{p}_lo"])
                for p in ("A", "B", "C"))
    assert wider >= 2
    # the seed resampling itself, by hand: the bootstrap variance of a mean of n values is their
    # population variance over n
    draws = seed_resampled([np.array(s) for s in SEEDS.values()], 20_000, np.random.default_rng(0))
    for i, seeds in enumerate(SEEDS.values()):
        assert draws[:, i].mean() == pytest.approx(np.mean(seeds), abs=2e-3)
        assert draws[:, i].var() == pytest.approx(np.var(seeds) / 3, rel=0.05)


def test_an_ensemble_and_a_student_are_claimed_better_only_beyond_the_seed_noise():
    from scalegrid.analysis import distillation, ensemble_gains

    members = [2.20, 2.13, 2.23]
    rows = [{"trial_id": f"m{m}", "stage": "train", "status": "COMPLETED", "model": "m", "params": 10,
             "unique_tokens": 100, "epochs": 4, "lr": 3e-3, "weight_decay": 0.1, "member": m, "members": 1,
             "val_loss": loss} for m, loss in enumerate(members)]
    ens = {"stage": "ensemble", "status": "COMPLETED", "model": "m", "params": 10, "unique_tokens": 100,
           "epochs": 4, "lr": 3e-3, "weight_decay": 0.1, "member": None}
    rows += [{**ens, "trial_id": "e3", "members": 3, "member_trial_ids": ["m0", "m1", "m2"], "val_loss": 1.95}]
    rows += [{**ens, "trial_id": "s", "stage": "distill", "members": 3, "val_loss": 2.14}]
    runs = pd.DataFrame(rows)
    gain = ensemble_gains(runs).iloc[0]
    sd = np.std(members, ddof=1)
    assert gain["loss_single"] == pytest.approx(np.mean(members)) and gain["members"] == 3
    assert gain["stderr"] == pytest.approx(sd * math.sqrt(1 + 1 / 3), rel=1e-12)
    assert gain["verdict"] == "lower"  # 0.237 below the members' mean: 4 standard errors
    student = distillation(runs).iloc[0]
    assert student["loss_single"] == pytest.approx(np.mean(members)) and student["single_seeds"] == 3
    assert student["student_vs_single"] == "within noise"  # 0.047 below: within 2 standard errors
    assert student["teacher_vs_single"] == "lower"
