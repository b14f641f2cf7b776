"""analysis/epochs.py on runs and curves tables whose answers are known by construction."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from scalegrid.analysis.epochs import adaptive_against_fixed, epoch_diagnostics, memorisation_by_epochs, with_stops
from scalegrid.analysis.least_squares import FitInputError

U = 4096


def run(trial_id, *, params=50_000, epochs, val_loss, lr=3e-3, wd=0.1, seed=0, stop=None, stopped=None, tokens=None,
        status="COMPLETED", stage="train", member=0, memorised=None):
    train = {"schedule": "wsd", "batch_size": 8, **({"stop": stop} if stop else {})}
    config = {"model": {"hidden_size": params // 1000}, "unique_tokens": U, "epochs": epochs, "lr": lr,
              "weight_decay": wd, "seed": seed, "train": train}
    return {
        "trial_id": trial_id, "model": f"m{params // 1000}k", "params": params, "unique_tokens": U, "epochs": epochs,
        "lr": lr, "weight_decay": wd, "seed": seed, "val_loss": val_loss, "tokens_seen": tokens or epochs * U,
        "status": status, "stage": stage, "member": member, "stopped_epoch": stopped,
        "memorised_train": memorised[0] if memorised else None, "memorised_val": memorised[1] if memorised else None,
        "config_json": json.dumps(config, sort_keys=True),
    }


VAL = {"rule": "val_curve", "gamma": 0.02}
GRAD = {"rule": "grad_stats", "gamma": 0.02, "patience": 1}
U_SHAPE = {4: 2.40, 8: 2.15, 16: 2.10, 32: 2.60, 64: 4.50}  # the best fixed count is 16, the longest 64


def fixed_grid(prefix="f", **kwargs):
    return [run(f"{prefix}{e}", epochs=e, val_loss=v, **kwargs) for e, v in U_SHAPE.items()]


def test_adaptive_runs_against_the_fixed_runs_of_their_point():
    runs = pd.DataFrame([
        *fixed_grid(),
        *fixed_grid("g", wd=0.4),  # another point: never compared with the first one's adaptive runs
        run("a1", epochs=64, stop=VAL, stopped=13, tokens=16 * U, val_loss=2.11),  # 13 + a decay of 3 epochs
        run("a2", epochs=64, stop=GRAD, stopped=40, tokens=50 * U, val_loss=2.90),
        run("a3", epochs=64, stop=VAL, wd=0.8, tokens=64 * U, val_loss=3.0),  # never stopped; no fixed runs there
        run("x", epochs=64, stop=VAL, stopped=2, val_loss=1.0, status="FAILED"),  # only COMPLETED rows count
    ])
    table = adaptive_against_fixed(runs).set_index(["weight_decay", "rule"])
    first = table.loc[(0.1, "val_curve")]
    assert first["fixed_epochs"] == [4, 8, 16, 32, 64] and first["fixed_runs"] == 5
    assert first["fixed_losses"] == list(U_SHAPE.values())
    assert (first["best_epochs"], first["best_loss"], first["longest_epochs"]) == (16, 2.10, 64)
    assert first["stopped_epoch"] == 13 and first["max_epochs"] == 64 and first["patience"] == 0
    assert first["token_share"] == pytest.approx(16 / 64) and first["loss_lost"] == pytest.approx(2.11 / 2.10 - 1)
    assert first["meets_goal"]
    second = table.loc[(0.1, "grad_stats")]
    assert second["patience"] == 1 and second["token_share"] == pytest.approx(50 / 64) and not second["meets_goal"]
    alone = table.loc[(0.8, "val_curve")]
    assert alone["fixed_runs"] == 0 and math.isnan(alone["best_loss"]) and math.isnan(alone["stopped_epoch"])
    assert not alone["meets_goal"] and len(table) == 3


def test_points_differ_in_nothing_but_epochs_and_the_stop():
    stops = with_stops(pd.DataFrame([run("f4", epochs=4, val_loss=2.0), run("a", epochs=64, stop=GRAD, val_loss=2.0),
                                     run("s", epochs=4, seed=1, val_loss=2.0)]))
    assert list(stops["stop_rule"].fillna("fixed")) == ["fixed", "grad_stats", "fixed"]
    assert list(stops["stop_patience"].fillna(-1)) == [-1, 1, -1]
    assert stops["point"][0] == stops["point"][1] != stops["point"][2]
    with pytest.raises(FitInputError, match="config_json of row 0 is not JSON"):
        with_stops(pd.DataFrame([{**run("f", epochs=1, val_loss=1.0), "config_json": "{nope"}]))
    with pytest.raises(FitInputError, match="missing column 'config_json'"):
        with_stops(pd.DataFrame([{"val_loss": 1.0}]))


def curve_rows(trial_id, epochs, steps_per_epoch=4):
    rows = []
    for e in range(1, epochs + 1):
        rows.append({"trial_id": trial_id, "epoch": float(e), "step": e * steps_per_epoch, "val_loss": 3.0 - 0.01 * e,
                     "grad_norm": 1.0 / e, "grad_cosine": math.nan if e == 1 else 0.9, "grad_snr": 2.0 / e,
                     "grad_gram_top": np.array([5.0 / e, 1.0, 0.5]), "val_curvature": math.nan if e < 3 else 0.001 * e})
        rows.append({"trial_id": trial_id, "epoch": e - 0.5, "step": e * steps_per_epoch - 2, "val_loss": 3.0,
                     "grad_norm": math.nan, "grad_cosine": math.nan, "grad_snr": math.nan, "grad_gram_top": None,
                     "val_curvature": math.nan})  # an evaluation inside an epoch: no diagnostics
    return rows


def test_epoch_diagnostics_follow_the_longest_run_at_the_best_point_per_size_and_budget():
    runs = pd.DataFrame([
        *fixed_grid(),                                           # 50k: best at 16 epochs, measured up to 64
        run("w8", epochs=8, wd=0.4, val_loss=2.0),                # 50k, a better point but not measured: left out
        run("b4", params=200_000, epochs=4, val_loss=1.9),        # 200k: best at 4, the longest measured at its point is 8
        run("b8", params=200_000, epochs=8, val_loss=1.95),
        run("b16", params=200_000, epochs=16, lr=1e-3, val_loss=1.8),  # another point (lr), not measured
        run("ad", epochs=64, stop=VAL, stopped=5, val_loss=2.0),  # adaptive runs are not the fixed curves
    ])
    curves = pd.DataFrame([r for tid, e in [("f4", 4), ("f16", 16), ("f64", 64), ("b4", 4), ("b8", 8), ("ad", 7)]
                           for r in curve_rows(tid, e)])
    table = epoch_diagnostics(runs, curves)
    assert set(table.groupby("params")["trial_id"].first().items()) == {(50_000, "f64"), (200_000, "b8")}
    small = table[table["params"] == 50_000]
    assert list(small["epoch"]) == list(map(float, range(1, 65))) and (small["best_epochs"] == 16).all()
    assert small["grad_norm"].tolist() == pytest.approx([1.0 / e for e in range(1, 65)])
    assert small["gram_top"].tolist() == pytest.approx([5.0 / e for e in range(1, 65)])
    assert (table[table["params"] == 200_000]["best_epochs"] == 4).all()
    with pytest.raises(FitInputError, match="train.diagnostics: true"):
        epoch_diagnostics(runs, pd.DataFrame(curve_rows("ad", 7)))


def test_memorisation_by_epochs_takes_the_best_measured_run_per_epoch_count():
    runs = pd.DataFrame([
        run("a", epochs=4, val_loss=2.2, memorised=(0.30, 0.10)),
        run("b", epochs=4, wd=0.4, val_loss=2.1, memorised=(0.25, 0.12)),  # the best at 4 epochs
        run("c", epochs=16, val_loss=2.0, memorised=(0.80, 0.15)),
        run("d", epochs=32, val_loss=1.5),  # not measured
        run("e", epochs=64, stop=VAL, val_loss=2.0, memorised=(0.9, 0.1)),  # adaptive: not a fixed epoch count
    ])
    table = memorisation_by_epochs(runs)
    assert list(table["epochs"]) == [4, 16]
    assert table["memorised_train"].tolist() == [0.25, 0.80] and table["gap"].tolist() == pytest.approx([0.13, 0.65])
    with pytest.raises(FitInputError, match="memorisation_samples"):
        memorisation_by_epochs(runs[runs["trial_id"] == "d"])
