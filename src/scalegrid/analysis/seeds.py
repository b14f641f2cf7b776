"""Seed noise: a point trained with several seeds is one point with a mean and a spread, and an
ordering between two points is claimed only when it exceeds that spread.

A *point* is a run's configuration less its seed: rows that differ only in `seed` (the grid's seed
axis) or `member` (an ensemble member, or a seed that `search.confirm_seeds` added) are seeds of
one point. A point is named by the columns of `POINT_COLUMNS` the table has and, in the runs
table, by `config_json` less those two fields, so every hashed setting (batch size, schedule, ...)
tells points apart.

    points = seed_points(rows)                 # one row per point: mean loss, its sd, seeds, seed losses
    sd = pooled_sd(points)                     # the seed spread, pooled over points with 2+ seeds
    verdict = compare(a_losses, b_losses, sd)  # "lower" | "higher" | "within noise" | "noise unknown"

The rule of `compare`: the difference of two means is beyond the noise when it exceeds
NOISE_Z (2) standard errors, sd * sqrt(1/n_a + 1/n_b), with sd the spread the two points' own seeds
show (pooled), else the spread of the whole table; with no point of two seeds anywhere, the noise
is unknown and no ordering is claimed as beyond it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalegrid.analysis.tables import require_columns

SEED_COLUMNS = ("seed", "member")  # what tells seeds of one point apart
POINT_COLUMNS = ("model", "params", "unique_tokens", "epochs", "lr", "weight_decay", "stage", "members")
NOISE_Z = 2.0  # standard errors a difference must exceed to be more than seed noise (~95%, normal)

LOWER, HIGHER, WITHIN_NOISE, NOISE_UNKNOWN = "lower", "higher", "within noise", "noise unknown"


def point_keys(rows: pd.DataFrame) -> pd.Series:
    """Per row, a key naming its point: its axis columns and its configuration (`config_json`),
    without seed and member."""
    columns = [c for c in POINT_COLUMNS if c in rows.columns]
    keys = rows[columns].astype(str).agg("|".join, axis=1) if columns else pd.Series("", index=rows.index)
    if "config_json" in rows.columns:
        keys = keys + "|" + rows["config_json"].map(_without_seed)
    elif not columns:
        return pd.Series(range(len(rows)), index=rows.index).astype(str)  # nothing names a point: every row its own
    return keys


def _without_seed(config_json: str) -> str:
    try:
        config = json.loads(config_json)
    except (TypeError, ValueError):
        return str(config_json)
    if not isinstance(config, dict):
        return str(config_json)
    return json.dumps({k: v for k, v in config.items() if k not in SEED_COLUMNS}, sort_keys=True)


def seed_points(rows: pd.DataFrame, *, loss: str = "val_loss") -> pd.DataFrame:
    """One row per point of `rows` (rows with a finite `loss` only): the row of its first seed
    (member 0, lowest seed), with `loss` replaced by the mean over the point's seeds, `<loss>_sd`
    (sample standard deviation; NaN with one seed), `seeds` (how many) and `seed_losses` (a tuple).

    A point whose rows are all extra ensemble members (`member` > 0: an ensemble recipe with its own
    epochs or weight decay) is an ensemble's input, not a single model: it is left out."""
    require_columns(rows, loss)
    values = pd.to_numeric(rows[loss], errors="coerce")
    rows = rows[np.isfinite(values)].reset_index(drop=True)
    if rows.empty:
        return rows.assign(**{f"{loss}_sd": [], "seeds": [], "seed_losses": []})
    member = pd.to_numeric(rows["member"], errors="coerce").fillna(0) if "member" in rows else pd.Series(0, index=rows.index)
    seed = pd.to_numeric(rows["seed"], errors="coerce").fillna(0) if "seed" in rows else pd.Series(0, index=rows.index)
    keyed = rows.assign(_point=point_keys(rows).to_numpy(), _member=member.to_numpy(), _seed=seed.to_numpy())
    keyed = keyed.sort_values(["_point", "_member", "_seed"], kind="stable")
    grouped = keyed.groupby("_point", sort=False)
    first = grouped.head(1).set_index("_point")
    losses = grouped[loss].apply(lambda s: tuple(float(v) for v in s))
    out = first.assign(
        **{loss: losses.map(np.mean), f"{loss}_sd": losses.map(_sd)},
        seeds=losses.map(len), seed_losses=losses,
    )
    out = out[out["_member"] == 0]  # a point of extra members only: an ensemble recipe's input
    return out.drop(columns=["_member", "_seed"]).reset_index(drop=True)


def _sd(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def pooled_sd(points: pd.DataFrame, *, loss: str = "val_loss") -> float:
    """The seed spread pooled over the points with two seeds or more (sqrt of the dof-weighted mean
    of their variances); NaN when no point has two seeds."""
    if points.empty or "seed_losses" not in points.columns:
        return math.nan
    return spread_of([np.asarray(v, dtype=float) for v in points["seed_losses"]])


def spread_of(groups: Sequence[np.ndarray]) -> float:
    """The pooled standard deviation of groups of replicates (groups of one count for nothing)."""
    ss = sum(float(((g - g.mean()) ** 2).sum()) for g in groups if g.size > 1)
    dof = sum(g.size - 1 for g in groups if g.size > 1)
    return math.sqrt(ss / dof) if dof else math.nan


@dataclass(frozen=True)
class Comparison:
    """a against b: the difference of their means, its standard error and the verdict."""

    difference: float  # mean(a) - mean(b)
    stderr: float  # NaN: the noise is unknown
    verdict: str  # lower | higher | within noise | noise unknown (a's mean against b's)

    @property
    def beyond_noise(self) -> bool:
        return self.verdict in (LOWER, HIGHER)

    def words(self, a: str, b: str) -> str:
        """'a is lower than b by 0.031 (2.6 standard errors of seed noise)' and the like."""
        d = abs(self.difference)
        errors = f"{d / self.stderr:.1f} standard errors" if self.stderr > 0 else "the seeds agree exactly"
        if self.verdict == NOISE_UNKNOWN:
            return (f"{a} is {'lower' if self.difference < 0 else 'higher'} than {b} by {d:.3g}, "
                    "but no point has two seeds: the seed noise is not measured")
        if self.verdict == WITHIN_NOISE:
            return f"{a} and {b} differ by {d:.3g}, within seed noise ({errors})"
        return f"{a} is {self.verdict} than {b} by {d:.3g}, beyond seed noise ({errors})"


def compare(a: Sequence[float], b: Sequence[float], sd: float = math.nan) -> Comparison:
    """Is a's mean below (or above) b's beyond the seed noise? The spread is pooled from a's and
    b's own seeds when either has two or more, else `sd` (e.g. `pooled_sd` of the whole table)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    difference = float(a.mean() - b.mean())
    own = spread_of([a, b])
    spread = own if math.isfinite(own) else sd
    if not math.isfinite(spread):
        return Comparison(difference, math.nan, NOISE_UNKNOWN)
    stderr = spread * math.sqrt(1 / a.size + 1 / b.size)
    if stderr > 0 and abs(difference) <= NOISE_Z * stderr:
        return Comparison(difference, stderr, WITHIN_NOISE)
    return Comparison(difference, stderr, LOWER if difference < 0 else HIGHER)


def orderings(
    points: pd.DataFrame, *, along: str = "params", by: Sequence[str] = ("unique_tokens",), loss: str = "val_loss",
    sd: float = math.nan,
) -> pd.DataFrame:
    """Per group `by`, each point against the next one along `along` (e.g. each size against the
    next larger, over `best_runs`): `from`, `to`, `difference` (to's mean loss - from's), `stderr`
    and `verdict` ("lower": the larger is better beyond the seed noise; "within noise"; ...).
    `sd`: the table-wide seed spread used where neither point has seeds of its own."""
    records = []
    for key, group in points.groupby(list(by), sort=True) if by else [((), points)]:
        key = key if isinstance(key, tuple) else (key,)
        group = group.sort_values(along)
        for (_, a), (_, b) in zip(group.iterrows(), group.iloc[1:].iterrows()):
            c = compare(_losses(b, loss), _losses(a, loss), sd)
            records.append({**dict(zip(by, key)), "from": a[along], "to": b[along], "difference": c.difference,
                            "stderr": c.stderr, "verdict": c.verdict})
    return pd.DataFrame(records, columns=[*by, "from", "to", "difference", "stderr", "verdict"])


def _losses(point: pd.Series, loss: str) -> tuple[float, ...]:
    seeds = point.get("seed_losses")
    return tuple(seeds) if isinstance(seeds, (tuple, list, np.ndarray)) and len(seeds) else (float(point[loss]),)
