"""Coordinate descent with a certificate: the paper's locally-optimal hyper-parameters, found.

A search walks ordered ladders of values, one per axis (epochs, learning rate, weight decay, ...);
a neighbour of a point is one ladder index up or down on one axis. From `start`, each step needs
the centre and its neighbours run, then moves the centre to the best of them — ties go to the
cheaper run, and a non-finite loss (a DIVERGED or FAILED run) is worse than any finite one. When
the centre is the best of its complete neighbourhood it is *certified*: the check of
`recipes.local_optimality_neighbours` (every neighbour run, none better), which each step calls.
A centre at the end of a ladder is at an *edge* instead; with `extend_edges` the ladder grows by
its last ratio (12.8 after 3.2, 6.4) and the walk goes on.

    path = local_search({"epochs": [1, 2, 4, 8], "weight_decay": [0.1, 0.4, 1.6]},
                        {"epochs": 4, "weight_decay": 0.4}, loss_of)
    path.missing      # the points to run now (loss_of returned None for them)
    path.state        # searching | certified | edge | diverged

The walk is a pure function of `loss_of`: replayed over the same results it takes the same path,
so a search resumes from the results store and two drivers agree on what to run next. Because the
centre only ever moves to a strictly better (loss, cost), the walk cannot cycle.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import pandas as pd

from scalegrid.analysis.recipes import local_optimality_neighbours
from scalegrid.spec.ladders import Scalar, extended_value

Coordinates = dict[str, Scalar]  # a point of the walk: each searched axis' value
LossOf = Callable[[Coordinates], "float | None"]  # None: not run yet; NaN or inf: DIVERGED or FAILED (worse)

SEARCHING, MOVED, EXTENDED = "searching", "moved", "extended"  # a step on the way
CERTIFIED, EDGE, DIVERGED = "certified", "edge", "diverged"  # where a walk ends
FINAL = (CERTIFIED, EDGE, DIVERGED)
RUN = "run"  # a neighbour's status while the centre itself has not run (nothing to compare with yet)


@dataclass(frozen=True)
class Neighbour:
    axis: str
    side: int  # -1: one ladder step down, +1: up
    value: Scalar | None  # None beyond the ladder's end
    loss: float  # NaN: not run yet; inf: DIVERGED or FAILED
    status: str  # no_worse | better | missing | edge (recipes.local_optimality_neighbours), or `run`


@dataclass(frozen=True)
class Step:
    centre: Coordinates
    loss: float  # the centre's (NaN: not run yet)
    neighbours: tuple[Neighbour, ...]
    outcome: str  # searching | moved | extended | certified | edge | diverged
    ladders: Mapping[str, tuple]  # the ladders of this step (after an extension: the grown ones)
    moved_to: Coordinates | None = None
    edge: tuple[str, ...] = ()  # the ladder ends the centre sits at: "epochs+", "weight_decay-"

    def neighbour_point(self, n: Neighbour) -> Coordinates | None:
        return None if n.value is None else {**self.centre, n.axis: n.value}


@dataclass(frozen=True)
class SearchPath:
    steps: tuple[Step, ...]
    missing: tuple[Coordinates, ...] = ()  # to run now: the centre's neighbourhood not run yet
    speculative: tuple[Coordinates, ...] = ()  # likely next: the neighbourhood of the best point so far

    @property
    def last(self) -> Step:
        return self.steps[-1]

    @property
    def state(self) -> str:
        return self.last.outcome

    @property
    def centre(self) -> Coordinates:
        return self.last.centre

    @property
    def finished(self) -> bool:
        return self.state in FINAL

    @property
    def ladders(self) -> Mapping[str, tuple]:
        return self.last.ladders

    def points(self) -> list[Coordinates]:
        """Every point the walk looked at (centres, neighbours on the ladders), in order, once each."""
        seen: dict[tuple, Coordinates] = {}
        for step in self.steps:
            for point in [step.centre, *(step.neighbour_point(n) for n in step.neighbours)]:
                if point is not None:
                    seen.setdefault(tuple(sorted(point.items())), point)
        return list(seen.values())


def local_search(
    ladders: Mapping[str, Sequence],
    start: Coordinates,
    loss_of: LossOf,
    *,
    cost: Callable[[Coordinates], float] | None = None,
    extend_edges: bool = False,
    max_extensions: int = 4,
    valid: Callable[[str, Scalar], bool] | None = None,
    original: Mapping[str, Sequence] | None = None,
    max_steps: int = 10_000,
) -> SearchPath:
    """Walk from `start` until a step needs runs that `loss_of` does not have, or the walk ends.

    `cost(point)` breaks ties between equal losses (the cheaper wins; default: none). `valid(axis,
    value)` says whether an extended ladder value is allowed (e.g. epochs >= 1). `original`: the
    ladders extensions are counted from (default `ladders`), at most `max_extensions` per end.
    """
    ladders = {axis: tuple(values) for axis, values in ladders.items()}
    original = {axis: tuple(values) for axis, values in (original or ladders).items()}
    centre, steps = dict(start), []
    for _ in range(max_steps):
        step, losses = _neighbourhood(ladders, centre, loss_of)
        missing = [p for p, loss in losses if loss is None]
        if missing:
            steps.append(replace(step, outcome=SEARCHING))
            return SearchPath(tuple(steps), tuple(missing), _speculative(step, losses, ladders, loss_of, cost, missing))
        best = _best(losses, centre, ladders, cost)
        if best != centre:
            steps.append(replace(step, outcome=MOVED, moved_to=best))
            centre = best
            continue
        if not math.isfinite(step.loss):
            steps.append(replace(step, outcome=DIVERGED))
            return SearchPath(tuple(steps))
        grown = _extended(ladders, step.edge, original, max_extensions, valid) if extend_edges and step.edge else None
        if grown is None:
            steps.append(replace(step, outcome=EDGE if step.edge else CERTIFIED))
            return SearchPath(tuple(steps))
        steps.append(replace(step, outcome=EXTENDED, ladders=grown))
        ladders = grown
    raise RuntimeError(f"the search took more than {max_steps} steps; this is a bug (a walk cannot cycle)")


def _neighbourhood(ladders: dict[str, tuple], centre: Coordinates, loss_of: LossOf) -> tuple[Step, list[tuple[Coordinates, float | None]]]:
    """The centre's step (outcome not decided yet) and (point, loss) of the centre and every
    neighbour on the ladders; a loss is None when not run, inf when DIVERGED or FAILED."""
    def loss(point: Coordinates) -> float | None:
        value = loss_of(point)
        return None if value is None else (float(value) if math.isfinite(value) else math.inf)

    at = {axis: ladder.index(centre[axis]) for axis, ladder in ladders.items()}
    centre_loss = loss(centre)
    losses, sides = [(centre, centre_loss)], []
    for axis, ladder in ladders.items():
        for side in (-1, +1):
            j = at[axis] + side
            point = {**centre, axis: ladder[j]} if 0 <= j < len(ladder) else None
            sides.append((axis, side, point))
            if point is not None:
                losses.append((point, loss(point)))
    statuses = _certificate(ladders, at, losses) if centre_loss is not None else {}
    neighbours = []
    for (axis, side, point), n_loss in zip(sides, _losses_by_side(sides, losses)):
        status = statuses.get((axis, side)) or ("edge" if point is None else "missing" if n_loss is None else RUN)
        neighbours.append(Neighbour(axis, side, None if point is None else point[axis],
                                    math.nan if n_loss is None else n_loss, status))
    edge = tuple(f"{a}{'-' if s < 0 else '+'}" for a, s, p in sides if p is None)
    step = Step(centre=centre, loss=math.nan if centre_loss is None else centre_loss, neighbours=tuple(neighbours),
                outcome=SEARCHING, ladders=ladders, edge=edge)
    return step, losses


def _losses_by_side(sides: list, losses: list[tuple[Coordinates, float | None]]) -> list[float | None]:
    by_point = {tuple(sorted(p.items())): loss for p, loss in losses}
    return [None if point is None else by_point[tuple(sorted(point.items()))] for _, _, point in sides]


def _certificate(ladders: dict[str, tuple], at: dict[str, int], losses: list[tuple[Coordinates, float | None]]) -> dict[tuple[str, int], str]:
    """(axis, side) -> the status `recipes.local_optimality_neighbours` gives each neighbour of the
    centre (`losses[0]`), on the ladders' index coordinates (so any values, numbers or not, work)."""
    axes = list(ladders)
    ran = [(p, loss) for p, loss in losses if loss is not None]
    runs = pd.DataFrame([{**{a: float(ladders[a].index(p[a])) for a in axes}, "val_loss": loss} for p, loss in ran])
    chosen = pd.DataFrame([{**{a: float(at[a]) for a in axes}, "val_loss": losses[0][1]}])
    detail = local_optimality_neighbours(
        runs, by=(), axes=axes, stage=None, chosen=chosen, grid={a: range(len(ladders[a])) for a in axes},
    )
    return {(r.axis, int(r.side)): r.status for r in detail.itertuples()}


def _order(point: Coordinates, loss: float, centre: Coordinates, ladders: dict[str, tuple], cost) -> tuple:
    """Better first: lower loss, then cheaper, then the centre (no move on a full tie), then ladder order."""
    return (loss, cost(point) if cost else 0.0, point != centre, tuple(ladders[a].index(point[a]) for a in ladders))


def _best(losses: list[tuple[Coordinates, float | None]], centre: Coordinates, ladders: dict[str, tuple], cost) -> Coordinates:
    ran = [(p, loss) for p, loss in losses if loss is not None]
    return min(ran, key=lambda pl: _order(pl[0], pl[1], centre, ladders, cost))[0]


def _speculative(step: Step, losses, ladders: dict[str, tuple], loss_of: LossOf, cost, missing: list[Coordinates]) -> tuple[Coordinates, ...]:
    """While the centre waits for neighbours: if one that ran already beats it, that one's own
    neighbourhood (not run, not already asked for) is what the next step will most likely need."""
    if math.isnan(step.loss):
        return ()
    best = _best(losses, step.centre, ladders, cost)
    if best == step.centre:
        return ()
    wanted = []
    for axis, ladder in ladders.items():
        i = ladder.index(best[axis])
        for j in (i - 1, i + 1):
            point = {**best, axis: ladder[j]} if 0 <= j < len(ladder) else None
            if point is not None and point not in missing and point not in wanted and loss_of(point) is None:
                wanted.append(point)
    return tuple(wanted)


def _extended(
    ladders: dict[str, tuple], ends: tuple[str, ...], original: Mapping[str, tuple], max_extensions: int, valid,
) -> dict[str, tuple] | None:
    """The ladders grown by one value at each end in `ends` that may grow; None if none may."""
    grown = dict(ladders)
    for end in ends:
        axis, side = end[:-1], (1 if end[-1] == "+" else -1)
        ladder, first = grown[axis], original[axis]
        beyond = len(ladder) - len(first) - _beyond_low(ladder, first) if side > 0 else _beyond_low(ladder, first)
        value = extended_value(ladder, side)
        if value is None or beyond >= max_extensions or (valid is not None and not valid(axis, value)):
            continue
        grown[axis] = (*ladder, value) if side > 0 else (value, *ladder)
    return grown if grown != ladders else None


def _beyond_low(ladder: tuple, original: tuple) -> int:
    """How many values a ladder has below its original first one."""
    return ladder.index(original[0]) if original[0] in ladder else 0


# --- a search's record (RESULTS/search/ rows, store.SearchRow columns) as tables ----------------------

PLANE_AXES = ("epochs", "weight_decay", "lr")  # the axes every search row carries as columns


def search_outcomes(steps: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: its last step (outcome, centre and its loss, `edge_axes`), the cell's
    columns, `steps` taken and `trials`, the distinct trials the walk looked at (run or to run)."""
    if steps.empty:
        return steps.assign(steps=[], trials=[])
    ordered = steps.sort_values(["cell_id", "step"])
    last = ordered.groupby("cell_id", sort=True).tail(1).set_index("cell_id")
    looked = ordered.groupby("cell_id", sort=True).apply(
        lambda g: len(set(g["centre_trial_id"]) | {t for ids in g["neighbour_trial_ids"] for t in ids if t}),
        include_groups=False,
    )
    return last.assign(steps=ordered.groupby("cell_id", sort=True).size(), trials=looked).reset_index()


def search_points(steps: pd.DataFrame) -> pd.DataFrame:
    """Every point a walk looked at, with its `epochs`, `weight_decay` and `lr` (a neighbour on
    another axis is left out: it does not lie on those axes' planes) and `loss` (NaN: not run;
    inf: DIVERGED or FAILED): cell_id, step, role (centre | neighbour), the three axes, loss."""
    records = []
    for row in steps.itertuples():
        centre = {a: getattr(row, a) for a in PLANE_AXES}
        records.append({"cell_id": row.cell_id, "step": row.step, "role": "centre", **centre, "loss": row.loss})
        for words, loss in zip(row.neighbours, row.neighbour_losses):
            axis, _, value = words.partition("=")
            if axis in PLANE_AXES and value:
                records.append({"cell_id": row.cell_id, "step": row.step, "role": "neighbour",
                                **centre, axis: float(value), "loss": loss})
    return pd.DataFrame(records, columns=["cell_id", "step", "role", *PLANE_AXES, "loss"])
