"""A fit's memory is bounded by chunks of starts and resamples, and its rows by --max-rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalegrid.analysis import fit_chinchilla, least_squares
from scalegrid.cli import main


def _table(n_rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = rng.choice([1e6, 3e6, 1e7, 3e7, 1e8], size=n_rows)
    d = rng.choice([1e8, 3e8, 1e9, 3e9], size=n_rows)
    loss = 1.8 + 400 * n**-0.34 + 410 * d**-0.28 + rng.normal(0, 0.005, size=n_rows)
    return pd.DataFrame({"params": n, "tokens": d, "val_loss": loss})


def test_chunked_starts_fit_what_one_batch_fits(monkeypatch):
    t = _table(40)
    whole = fit_chinchilla(t, bootstrap=0)
    monkeypatch.setattr(least_squares, "MAX_ELEMENTS", 40 * 7)  # 7 starts (and resamples) at a time
    chunked = fit_chinchilla(t, bootstrap=20)
    assert chunked.objective == whole.objective  # the starts are independent problems: same optimum, bit for bit
    assert chunked.params == whole.params
    assert chunked.n_bootstrap == 20 and chunked.samples.shape[0] == 20 and np.isfinite(chunked.samples).all()


def test_a_table_over_max_rows_is_refused_in_one_line(tmp_path, capsys):
    path = tmp_path / "big.csv"
    _table(12).to_csv(path, index=False)
    assert main(["fit", "chinchilla", str(path), "--tokens", "tokens", "--max-rows", "10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "12 rows to fit, more than --max-rows 10" in err[0] and "--max-rows 12" in err[0]
