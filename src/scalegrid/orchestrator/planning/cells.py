"""A sweep's `search:`: its cells, each cell's walk replayed from the results store, and the driver.

A cell is one combination of the axes the spec does not search (model x unique_tokens x seed x
...). Its search is `analysis.walk.local_search` over the spec's ladders, with the losses of the
store's run rows: a point's trial is the cell's trial with the point's axis values, hashed like
any grid point, so a grid run earlier counts and a search extended later trains only what is new.

    cells = search_cells(spec, data, results)        # pure: the cells and their start trials
    searches = replay(spec, cells, losses.get)       # every cell's walk over what is known
    graph, searches = searched_graph(spec, data, results, snapshot)   # what `plan` shows

The walk is a function of the results alone, so nothing but the run rows is needed to resume:
`RESULTS/search/<cell_id>.parquet` (one row per step) is written for people and `status`, never
read back. With `start: from_smaller` a cell waits until the next smaller model of its other axes
has finished its search, then starts at its optimum (on its ladders, extended ones included),
moved along the trend of the two smaller sizes' optima (`walk.warm_start`). A point's seeds are
its trial (member 0) and its members 1..`confirm_seeds` in the store: trials like an ensemble's
members, so an ensemble at the optimum shares them.
`execution/walk_driver.py` is one run's bookkeeping over this: what to train next (longest first),
what is in flight, what another driver trains (its lease), what landed.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from scalegrid import grid, store
from scalegrid.analysis.walk import (
    CERTIFIED,
    CONFIRMING,
    DIVERGED,
    EDGE,
    Coordinates,
    Neighbourhood,
    SearchPath,
    Step,
    local_search,
    warm_start,
)
from scalegrid.orchestrator.planning.stage_graph import StageGraph, build, member_trial
from scalegrid.spec import Point, Sweep
from scalegrid.storage import ResultsLayout
from scalegrid.trial import DataIdentity, Status, Trial

WAITING = "waiting"  # a from_smaller cell whose smaller model is still searching


@dataclass(frozen=True)
class Cell:
    cell_id: str  # the cell's identity (its trials' hashed fields less the searched axes) and the searched axes
    point: Point  # the axes not searched
    label: str  # the cell in words: its axes that vary
    template: Trial  # the cell's trial at the search's start
    smaller: str | None = None  # the cell of the next smaller model with the same other axes
    _trials: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def params(self) -> int:
        return self.template.config.num_params

    def trial_at(self, values: Coordinates, member: int = 0) -> Trial:
        """The cell's trial with the searched axes at `values`, or its extra seed `member` (cached:
        the walk asks often)."""
        key = (tuple(sorted(values.items())), member)
        if key not in self._trials:
            trial = grid.trial_at(self.template, values)
            self._trials[key] = trial if member == 0 else member_trial(trial, {"member": member})
        return self._trials[key]


@dataclass(frozen=True)
class CellSearch:
    cell: Cell
    path: SearchPath | None  # None: waiting for the smaller model's search
    confirm_seeds: int = 0  # extra seeds of each centre the walk confirms
    awaiting: tuple[Trial, ...] = ()  # the confirming centre's extra seeds not run yet

    @property
    def state(self) -> str:
        """searching | confirming | certified | edge | diverged | waiting."""
        return WAITING if self.path is None else self.path.state

    @property
    def finished(self) -> bool:
        return self.path is not None and self.path.finished

    def trials(self) -> list[Trial]:
        """Every trial the walk looked at, those still to run included (the confirmed centres' extra seeds too)."""
        if self.path is None:
            return []
        seeds = [self.cell.trial_at(p, m) for p in self.path.confirmed for m in range(1, self.confirm_seeds + 1)]
        return [self.cell.trial_at(p) for p in self.path.points()] + seeds

    def missing(self) -> list[Trial]:
        return [] if self.path is None else [self.cell.trial_at(p) for p in self.path.missing] + list(self.awaiting)

    def speculative(self) -> list[Trial]:
        return [] if self.path is None else [self.cell.trial_at(p) for p in self.path.speculative]

    def centre(self) -> tuple[Point, Trial]:
        """The cell's grid point now (its optimum, once finished) and its trial."""
        centre = self.cell.point | (self.path.centre if self.path else {})
        return centre, self.cell.trial_at(self.path.centre if self.path else {})


# --- cells and their walks (pure) --------------------------------------------------------------------


def search_cells(sweep: Sweep, data: DataIdentity, results: ResultsLayout | None = None) -> list[Cell]:
    """The spec's cells in spec order, each with its trial at the search's start."""
    searched = sorted(sweep.search.ladders)
    shown = [a for a in grid.cell_points(sweep)[0] if a in ("model", "unique_tokens", "seed") or len(sweep.values(a)) > 1]
    cells = []
    for point, trial in grid.point_trials(sweep, data, results):
        keep = sweep.trainer == "lm" and sweep.keep_weights  # as a grid's trials (`graph.build`); a cell's optimum may become an ensemble member
        cell_point = point.without(searched)
        cells.append(Cell(
            cell_id=grid.content_hash({"searched": searched, "cell": _cell_identity(trial, searched)}),
            point=cell_point,
            label=cell_point.words(shown),
            template=trial.model_copy(update={"save_model": keep}),
        ))
    return _with_smaller(cells)


def _cell_identity(trial: Trial, searched: list[str]) -> dict:
    ident = grid.identity(trial.config)
    ident["train"] = {k: v for k, v in ident["train"].items() if k not in searched}
    return {k: v for k, v in ident.items() if k not in searched}


def _with_smaller(cells: list[Cell]) -> list[Cell]:
    """Each cell with the next smaller model's cell of the same other axes (for `from_smaller`)."""
    by_rest: dict[tuple, list[Cell]] = {}
    for cell in cells:
        by_rest.setdefault(cell.point.without(["model"]).key, []).append(cell)
    smaller = {}
    for group in by_rest.values():
        ordered = sorted(group, key=lambda c: c.params)
        smaller.update({b.cell_id: a.cell_id for a, b in zip(ordered, ordered[1:]) if a.params < b.params})
    return [Cell(c.cell_id, c.point, c.label, c.template, smaller.get(c.cell_id)) for c in cells]


def replay(
    sweep: Sweep, cells: list[Cell], loss_of: Callable[[str], float | None], previous: dict[str, CellSearch] | None = None,
    dirty: set[str] | None = None,
) -> dict[str, CellSearch]:
    """cell_id -> its walk over the known losses (`loss_of(trial_id)`: None when not run).

    With `previous` and `dirty`, only the dirty cells (and those that start from them) walk again."""
    search, out = sweep.search, {}
    rewalked: set[str] = set()
    neighbourhood = Neighbourhood(coupled=search.coupled, full=search.full, confirm_seeds=search.confirm_seeds,
                                  certify_radius=search.certify_radius)
    for cell in sorted(cells, key=lambda c: c.params):  # a smaller model's search first
        if previous is not None and dirty is not None and cell.cell_id not in dirty and cell.smaller not in rewalked:
            out[cell.cell_id] = previous[cell.cell_id]
            continue
        rewalked.add(cell.cell_id)
        ladders, start = search.ladders, search.start_values()
        if search.from_smaller and cell.smaller is not None:
            prior = out[cell.smaller]
            if not prior.finished:
                out[cell.cell_id] = CellSearch(cell, None)
                continue
            if prior.state != DIVERGED:
                ladders, start = prior.path.ladders, warm_start(ladders_of=prior.path.ladders, size=cell.params,
                                                                optima=_optima(out, prior))
        seeds = _seeds_of(cell, loss_of, search.confirm_seeds)
        path = local_search(
            ladders, start, seeds, cost=lambda p, cell=cell: cell.trial_at(p).config.estimated_flops,
            extend_edges=search.extend_edges, max_extensions=search.max_extensions,
            valid=sweep.valid, original=search.ladders, neighbourhood=neighbourhood,
        )
        awaiting = () if path.confirming is None else tuple(
            cell.trial_at(path.confirming, m) for m in range(1, search.confirm_seeds + 1)
            if loss_of(cell.trial_at(path.confirming, m).trial_id) is None
        )
        out[cell.cell_id] = CellSearch(cell, path, search.confirm_seeds, awaiting)
    return out


def _seeds_of(cell: Cell, loss_of: Callable[[str], float | None], extra: int) -> Callable[[Coordinates], tuple | None]:
    """A point's known seed losses for the walk: its trial's (None: not run), then its members 1..extra that ran."""
    def seeds(point: Coordinates) -> tuple[float, ...] | None:
        first = loss_of(cell.trial_at(point).trial_id)
        if first is None:
            return None
        more = (loss_of(cell.trial_at(point, m).trial_id) for m in range(1, extra + 1))
        return (first, *(v for v in more if v is not None))

    return seeds


def _optima(out: dict[str, CellSearch], prior: CellSearch) -> list[tuple[float, Coordinates]]:
    """(parameters, optimum) of the finished smaller models of a from_smaller chain, the nearest last
    (the two nearest at most: the trend `warm_start` follows)."""
    chain = [prior]
    while len(chain) < 2 and chain[-1].cell.smaller is not None:
        smaller = out[chain[-1].cell.smaller]
        if smaller.path is None or smaller.state == DIVERGED:
            break
        chain.append(smaller)
    return [(s.cell.params, s.path.centre) for s in reversed(chain)]


def losses(snapshot: store.Snapshot, *, failed_count: bool) -> dict[str, float]:
    """trial_id -> its loss for the search: val_loss, inf when DIVERGED (and FAILED, if
    `failed_count`; otherwise a FAILED trial is to be run again, like a grid's)."""
    runs = snapshot.runs
    out: dict[str, float] = {}
    for tid, status, loss in zip(runs["trial_id"], runs["status"], runs["val_loss"]):
        value = loss_of_outcome(status, loss)
        if value is not None and (status != Status.FAILED.value or failed_count):
            out[tid] = value
    return out


def loss_of_outcome(status: str | None, val_loss: float | None) -> float | None:
    if status == Status.COMPLETED.value:
        return float(val_loss) if val_loss is not None and math.isfinite(val_loss) else math.inf
    return math.inf if status in (Status.DIVERGED.value, Status.FAILED.value) else None


def searched_graph(
    sweep: Sweep, data: DataIdentity, results: ResultsLayout, snapshot: store.Snapshot,
) -> tuple[StageGraph, dict[str, CellSearch]]:
    """The stage graph of a searched spec (its trials: every trial the walks looked at; once every
    cell is finished, its optima are the grid points of the ensembles and students) and the walks."""
    build(sweep, data, results)  # the ensembles and students name cells: checked at the start points
    cells = search_cells(sweep, data, results)
    searches = replay(sweep, cells, losses(snapshot, failed_count=False).get)
    looked_at = list({t.trial_id: t for s in searches.values() for t in s.trials()}.values())
    if not all(s.finished for s in searches.values()):
        return StageGraph(trials=looked_at), searches
    graph = build(sweep, data, results, points=[searches[c.cell_id].centre() for c in cells])
    known = {t.trial_id for t in graph.trials}
    graph.trials.extend(t for t in looked_at if t.trial_id not in known)
    return graph, searches


# --- rows and tables ----------------------------------------------------------------------------------


def _words(point: Coordinates) -> str:
    return ", ".join(f"{a}={v:g}" if isinstance(v, float) else f"{a}={v}" for a, v in point.items())


def search_rows(sweep: str, search: CellSearch) -> list[store.SearchRow]:
    """The cell's walk as `search/` rows, one per step."""
    cell, now = search.cell, dt.datetime.now(dt.timezone.utc)
    return [_step_row(sweep, cell, i, step, now) for i, step in enumerate(search.path.steps)] if search.path else []


def _step_row(sweep: str, cell: Cell, i: int, step: Step, now: dt.datetime) -> store.SearchRow:
    centre = cell.trial_at(step.centre)
    points = [step.neighbour_point(n) for n in step.neighbours]
    return store.SearchRow(
        cell_id=cell.cell_id, sweep=sweep, cell=cell.label, model=cell.template.model_label, params=cell.params,
        unique_tokens=centre.config.unique_tokens, seed=centre.config.seed, step=i, outcome=step.outcome,
        centre=_words(step.centre), centre_trial_id=centre.trial_id, epochs=centre.config.epochs,
        lr=centre.config.lr, weight_decay=centre.config.weight_decay, loss=step.loss, seed_losses=list(step.seeds),
        noise=step.noise, neighbourhood=step.neighbourhood,
        neighbours=[f"{n.label} (edge)" if p is None else _words(dict(zip(n.axes, n.values)))
                    for n, p in zip(step.neighbours, points)],
        neighbour_trial_ids=["" if p is None else cell.trial_at(p).trial_id for p in points],
        neighbour_losses=[n.loss for n in step.neighbours], neighbour_status=[n.status for n in step.neighbours],
        moved_to=_words(step.moved_to) if step.moved_to else None,
        moved_to_trial_id=cell.trial_at(step.moved_to).trial_id if step.moved_to else None,
        certified=step.outcome == CERTIFIED, edge=bool(step.edge), edge_axes=list(step.edge),
        ladders_json=json.dumps({a: list(v) for a, v in step.ladders.items()}), finished_at=now,
    )


def cells_table(searches: dict[str, CellSearch]) -> pd.DataFrame:
    """One row per cell: its state, centre, the centre's loss (its seeds' mean), trials looked at and still to run;
    smallest model first."""
    rows = []
    for s in sorted(searches.values(), key=lambda s: s.cell.params):
        loss = s.path.last.loss if s.path else None  # the centre's mean over its seeds
        rows.append({
            "cell": s.cell.label, "state": _state_words(s), "centre": _words(s.path.centre) if s.path else "-",
            "val_loss": math.nan if loss is None else loss, "steps": len(s.path.steps) if s.path else 0,
            "trials": len(s.trials()), "to_run": len(s.missing()),
        })
    return pd.DataFrame(rows, columns=["cell", "state", "centre", "val_loss", "steps", "trials", "to_run"])


def _state_words(s: CellSearch) -> str:
    if s.state == EDGE:
        return f"at edge ({', '.join(s.path.last.edge)})"
    if s.state == CONFIRMING:
        return f"confirming ({len(s.awaiting)} more seeds of its centre to run)"
    return "waiting for the smaller model" if s.state == WAITING else s.state


def states_line(searches: dict[str, CellSearch]) -> str:
    counts = pd.Series([s.state for s in searches.values()]).value_counts()
    words = {CERTIFIED: "certified", EDGE: "at edge", "searching": "searching", CONFIRMING: "confirming",
             WAITING: "waiting", DIVERGED: "diverged"}
    return f"{len(searches)} cells (" + ", ".join(f"{counts[k]} {w}" for k, w in words.items() if k in counts) + ")"
