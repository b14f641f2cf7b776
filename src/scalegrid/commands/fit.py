"""`scalegrid fit KIND FILE`: fit a scaling law to any table -- CSV, Parquet or a results directory.

    scalegrid fit power-law results/x --x params --by unique_tokens --json
    scalegrid fit chinchilla chinchilla.csv --params "Model Size" --flops "Training FLOP" \\
        --loss loss --drop-highest-loss 5
    scalegrid fit data-constrained runs.csv --tokens tokens --base-law muennighoff2023
    scalegrid fit reuse results/linreg-reuse --eps 0.1,0.5

Columns default to the runs table's (docs/results.md): params, tokens (else tokens_seen),
unique_tokens, epochs, val_loss. Rows whose status is not COMPLETED are skipped, and so are rows
of a stage other than `train` unless --stage says otherwise (reuse also reads a results
directory's curves and DIVERGED runs: see `fit_reuse`). The fitting itself is
`scalegrid.analysis`; this module only reads the table, filters it and prints the result.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from scalegrid.analysis import (
    FitInputError,
    FitResult,
    Objective,
    completed,
    drop_highest,
    fit_chinchilla,
    fit_data_constrained,
    fit_power_law,
)
from scalegrid.analysis.tables import per_group
from scalegrid import store
from scalegrid.commands import fit_reuse
from scalegrid.commands.args import positive_int
from scalegrid.errors import UserError
from scalegrid.storage import layout
from scalegrid.storage.layout import RUNS

KINDS = ("power-law", "chinchilla", "data-constrained", "reuse")


MAX_ROWS = 10_000  # a fit's rows by default: a law over sizes and budgets has tens to thousands


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = subparsers.add_parser(
        "fit",
        help="fit a scaling law (power-law, chinchilla, data-constrained, reuse) to a table",
        description=__doc__.splitlines()[0],
    )
    sub.add_argument("kind", choices=KINDS, help="which law to fit")
    sub.add_argument("file", type=Path, help="CSV or Parquet file, or a results directory")

    cols = sub.add_argument_group("columns")
    cols.add_argument("--x", default="params",
                      help="power-law: the variable(s), comma-separated for an additive "
                           "multi-variable law (default: params)")
    cols.add_argument("--y", default=None, help="power-law: the loss (default: --loss)")
    cols.add_argument("--by", default="", help="one fit per group of these columns (comma-separated)")
    cols.add_argument("--params", default="params", help="parameter count N (default: params)")
    tok = cols.add_mutually_exclusive_group()
    tok.add_argument("--tokens", default=None,
                     help="training tokens D (default: tokens, else tokens_seen)")
    tok.add_argument("--flops", default=None, help="training FLOPs C instead of tokens: D = C / 6N")
    cols.add_argument("--unique-tokens", default="unique_tokens",
                      help="unique tokens U (default: unique_tokens)")
    cols.add_argument("--samples", default="unique_tokens",
                      help="reuse: unique samples N (default: unique_tokens)")
    cols.add_argument("--epochs", default="epochs", help="reuse: epochs K (default: epochs)")
    cols.add_argument("--loss", default="val_loss", help="the loss (default: val_loss)")

    how = sub.add_argument_group("fitting")
    how.add_argument("--objective", choices=("huber", "lsq"), default="huber",
                     help="huber: Huber on log residuals (default); lsq: least squares on the loss")
    how.add_argument("--delta", type=float, default=1e-3, help="Huber delta (default: 1e-3)")
    how.add_argument("--base-law", choices=("muennighoff2023", "fit"), default="muennighoff2023",
                     help="data-constrained: freeze the paper's published base law, or fit it on "
                          "the single-epoch rows (default: muennighoff2023)")
    how.add_argument("--eps", default="0.1,0.2,0.3,0.5",
                     help="reuse: K*(N) where E(K, N) / K falls below 1 - eps, at each of these "
                          "(comma-separated; default: 0.1,0.2,0.3,0.5)")
    how.add_argument("--bootstrap", type=int, default=1000, metavar="B",
                     help="bootstrap resamples for the intervals, 0 for none (default: 1000)")
    how.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    how.add_argument("--level", type=float, default=0.95, help="interval level (default: 0.95)")

    rows = sub.add_argument_group("rows")
    rows.add_argument("--max-rows", type=positive_int, default=MAX_ROWS, metavar="N",
                      help=f"fit at most this many rows (default: {MAX_ROWS:,}); a larger table is refused, not sampled")
    rows.add_argument("--drop-highest-loss", type=int, default=0, metavar="K",
                      help="drop the K highest-loss rows of each group before fitting")
    rows.add_argument("--stage", default="train",
                      help="keep rows of this stage when the table has a stage column; "
                           "'all' keeps every stage (default: train)")
    sub.add_argument("--json", action="store_true", help="print one JSON document")
    sub.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    table = read_table(args.file)
    check_rows(table, args.max_rows, args.file)
    if args.kind == "reuse":
        return _run_reuse(args, table)
    table = select_rows(table, args.stage)
    by = _names(args.by)
    try:
        fit, columns, loss = build_fit(args, table)
        table = drop_missing(table, [*by, *columns])
        fits = per_group(table, by, lambda rows: fit(drop_highest(rows, loss, args.drop_highest_loss)))
    except FitInputError as err:
        raise UserError(f"{args.kind}: {str(err).removeprefix(f'{args.kind}: ')}") from err
    if args.json:
        print(json.dumps(to_document(args, fits), allow_nan=False, default=str))
    else:
        print(render(args, fits))
    return 0


def check_rows(table: pd.DataFrame, max_rows: int, path: Path) -> None:
    """A fit's time grows with its rows (every start and resample evaluates all of them; memory is
    bounded, `least_squares.MAX_ELEMENTS`): a table over `max_rows` is refused in one line."""
    if len(table) > max_rows:
        raise UserError(
            f"{path}: {len(table):,} rows to fit, more than --max-rows {max_rows:,}; fit the best run per size and budget "
            f"(e.g. `scalegrid fit` on a results directory), filter the table, or pass --max-rows {len(table)}"
        )


def _run_reuse(args: argparse.Namespace, table: pd.DataFrame) -> int:
    fit_reuse.parse_eps(args.eps)  # a bad --eps fails before any work
    by = _names(args.by)
    rows = fit_reuse.rows_of(args.file, table, args.stage)
    try:
        rows = drop_missing(rows, [*by, args.samples, args.epochs, args.loss])
        analyses = fit_reuse.analyse(args, rows, by)
    except FitInputError as err:
        raise UserError(f"reuse: {err}") from err
    if args.json:
        print(json.dumps(_finite(fit_reuse.to_document(args, analyses)), allow_nan=False, default=str))
    else:
        print(fit_reuse.render(args, analyses))
    return 0


# ---------------------------------------------------------------------------------------------
# Reading


def read_table(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file, or every runs/*.parquet of a results directory (unreadable files
    are skipped with a warning on stderr)."""
    if path.is_dir():
        return _read_results_dir(path)
    if not path.exists():
        raise UserError(f"{path}: no such file; give a CSV or Parquet file or a results directory")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".txt", ".tsv"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except Exception as err:  # any parse failure is the user's file, reported on one line
        raise UserError(
            f"{path}: cannot read it as {suffix[1:]} ({type(err).__name__}: {err})"
        ) from err
    raise UserError(f"{path}: unknown file type {suffix or '(none)'}; give a .csv or .parquet file")


def _read_results_dir(path: Path) -> pd.DataFrame:
    """runs/ and ensembles/ of a results directory, or the Parquet run files of one directory."""
    if (path / RUNS).is_dir() or not any(path.glob("*.parquet")):
        found = store.read(layout(path))
        table, unreadable = found.all_runs, found.unreadable
    else:  # the runs/ directory itself, or any directory of run files
        found = store.scan(layout(path.parent), path.name)
        table, unreadable = found.frame, found.unreadable
    for shown, reason in unreadable:  # a half-written or corrupt file must not stop the fit
        print(f"scalegrid: warning: skipping unreadable {shown} ({reason})", file=sys.stderr)
    if not len(table):
        if unreadable:
            raise UserError(f"{path}: none of the {len(unreadable)} run files could be read")
        raise UserError(f"{path}: no runs/*.parquet files; is it a scalegrid results directory?")
    return table


def select_rows(table: pd.DataFrame, stage: str) -> pd.DataFrame:
    table = completed(table)
    if stage != "all" and "stage" in table.columns:
        table = table[table["stage"] == stage]
    return table


def drop_missing(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Rows with a missing value in a column the fit uses are skipped, with a note on stderr."""
    present = [c for c in columns if c in table.columns]
    keep = table[present].notna().all(axis=1)
    if not keep.all():
        print(f"scalegrid: note: skipped {int((~keep).sum())} rows with missing "
              f"{', '.join(present)}", file=sys.stderr)
    return table[keep]


# ---------------------------------------------------------------------------------------------
# Building the fit


def build_fit(
    args: argparse.Namespace, table: pd.DataFrame
) -> tuple[Callable[[pd.DataFrame], FitResult], list[str], str]:
    """The fit for one group, the columns it reads, and its loss column."""
    objective = Objective(kind=args.objective, delta=args.delta)
    common = dict(objective=objective, bootstrap=args.bootstrap, seed=args.seed, level=args.level)
    if args.kind == "power-law":
        xs, y = _names(args.x), args.y or args.loss
        return (lambda rows: fit_power_law(rows, xs, y, **common)), [*xs, y], y
    tokens = args.tokens
    if tokens is None and args.flops is None:
        has_tokens = "tokens" in table.columns or "tokens_seen" not in table.columns
        tokens = "tokens" if has_tokens else "tokens_seen"
    if args.kind == "chinchilla":
        return (
            lambda rows: fit_chinchilla(rows, params=args.params, tokens=tokens, flops=args.flops,
                                        loss=args.loss, **common),
            [args.params, tokens or args.flops, args.loss],
            args.loss,
        )
    if args.flops is not None:
        raise FitInputError("data-constrained needs --tokens (tokens seen), not --flops")
    return (
        lambda rows: fit_data_constrained(rows, params=args.params, tokens=tokens,
                                          unique_tokens=args.unique_tokens, loss=args.loss,
                                          base_law=args.base_law, **common),
        [args.params, tokens, args.unique_tokens, args.loss],
        args.loss,
    )


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


# ---------------------------------------------------------------------------------------------
# Output


def to_document(args: argparse.Namespace, fits: list[tuple[dict, FitResult]]) -> dict:
    """{"kind", "file", "settings", "fits": [{"group", "params", "ci", "objective", "n_points",
    "converged"}]}; non-finite numbers become null."""
    return _finite({
        "kind": args.kind,
        "file": str(args.file),
        "settings": {"objective": args.objective, "delta": args.delta, "bootstrap": args.bootstrap,
                     "seed": args.seed, "level": args.level},
        "fits": [{"group": group, **result.to_dict()} for group, result in fits],
    })


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def render(args: argparse.Namespace, fits: list[tuple[dict, FitResult]]) -> str:
    """A readable table: one block per group, one line per parameter."""
    how = (f"Huber delta {args.delta:g} on log loss" if args.objective == "huber"
           else "least squares on the loss")
    lines = [f"{args.kind} fit of {args.file} ({how}; {args.bootstrap} bootstrap resamples)"]
    level = f"{100 * args.level:g}% interval"
    for group, res in fits:
        lines.append("")
        if group:
            lines.append(", ".join(f"{k}={v}" for k, v in group.items()))
        lines.append(f"  {'param':<10} {'value':>12}   {level}")
        for name, value in res.params.items():
            lo, hi = res.ci.get(name, (math.nan, math.nan))
            interval = (f"[{lo:.5g}, {hi:.5g}]" if name in res.ci
                        else "- (zero width: the points lie on the law exactly)" if name in res.zero_width else "-")
            lines.append(f"  {name:<10} {value:>12.6g}   {interval}")
        lines.append(f"  objective {res.objective:.6g}, {res.n_points} points, {res.n_params} free parameters, "
                     f"{'converged' if res.converged else 'NOT converged'}")
        if res.degenerate:
            lines.append("  DEGENERATE: " + "; ".join(res.flags) + " -- the law says nothing about these points")
    return "\n".join(lines)
