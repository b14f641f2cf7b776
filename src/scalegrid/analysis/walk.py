"""Coordinate descent with a certificate: the paper's locally-optimal hyper-parameters, found.

A search walks ordered ladders of values, one per axis (epochs, learning rate, weight decay, ...).
A point's neighbourhood is a set of moves (`recipes.neighbourhood_moves`): one ladder step down and
up on each axis, plus the four diagonal steps of each *coupled* pair of axes (lr x epochs by
default: more epochs want a smaller lr, a valley that runs diagonally and that one axis at a time
cannot see), or every point around it (3^d - 1). From `start`, each step needs the centre and its
neighbours run, then moves the centre to the best of them -- ties go to the cheaper run, and a
non-finite loss (a DIVERGED or FAILED run) is worse than any finite one. When the centre is the
best of its complete neighbourhood it is *certified*, and the certificate names the neighbourhood
it checked. A centre at the end of a ladder is at an *edge* instead; with `extend_edges` the ladder
grows by its last ratio (12.8 after 3.2, 6.4) and the walk goes on.

Seeds. `loss_of` may give a point's losses over several seeds (a tuple, seed 0 first): the point's
loss is their mean, and a centre with two seeds or more holds unless a neighbour beats it by more
than the seed noise (`seeds.NOISE_Z` standard errors of the two means, the spread pooled over the
neighbourhood's seeded points): a neighbour lower by less is `within_noise`, not better. With
`confirm_seeds: K`, a walk about to end asks for K more seeds of its centre first
(`SearchPath.confirming`); with them the centre is certified within the noise, or, if a neighbour
beats its mean beyond the noise (the first seed was lucky), the walk moves on. A centre of one
seed moves to any lower mean, so the path up to a confirmed centre does not change with its seeds
unless their mean does.

    path = local_search({"epochs": [1, 2, 4, 8], "weight_decay": [0.1, 0.4, 1.6]},
                        {"epochs": 4, "weight_decay": 0.4}, loss_of)
    path.missing      # the points to run now (loss_of returned None for them)
    path.confirming   # the centre whose extra seeds to run now (None: none)
    path.state        # searching | confirming | certified | edge | diverged

The walk is a pure function of `loss_of`: replayed over the same results it takes the same path,
so a search resumes from the results store and two drivers agree on what to run next. Because the
centre only ever moves to a strictly better (loss, cost), the walk cannot cycle (with seeds: every
point is confirmed once, so a walk that moves on after a confirmation ends after finitely many).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from scalegrid.analysis.recipes import Move, neighbour_status, neighbourhood_moves, neighbourhood_words
from scalegrid.analysis.seeds import NOISE_Z, spread_of
from scalegrid.spec.ladders import Scalar, extended_value

Coordinates = dict[str, Scalar]  # a point of the walk: each searched axis' value
Losses = "float | Sequence[float] | None"  # None: not run yet; a tuple: its seeds' losses; NaN or inf: DIVERGED or FAILED
LossOf = Callable[[Coordinates], Losses]

SEARCHING, MOVED, EXTENDED, CONFIRMING = "searching", "moved", "extended", "confirming"  # a step on the way
CERTIFIED, EDGE, DIVERGED = "certified", "edge", "diverged"  # where a walk ends
FINAL = (CERTIFIED, EDGE, DIVERGED)
RUN = "run"  # a neighbour's status while the centre itself has not run (nothing to compare with yet)


@dataclass(frozen=True)
class Neighbour:
    move: Move  # (axis, -1 | +1) per axis it moves along: one for an axis neighbour, two for a diagonal
    values: tuple[Scalar, ...] | None  # the moved axes' values, in the move's order; None beyond a ladder's end
    loss: float  # its seeds' mean; NaN: not run yet; inf: DIVERGED or FAILED
    status: str  # no_worse | better | within_noise | missing | edge (`recipes.neighbour_status`), or `run`
    seeds: int = 1

    @property
    def label(self) -> str:
        """'epochs+', 'epochs+ lr-'."""
        return " ".join(f"{axis}{'+' if side > 0 else '-'}" for axis, side in self.move)

    @property
    def axes(self) -> tuple[str, ...]:
        return tuple(axis for axis, _ in self.move)


@dataclass(frozen=True)
class Step:
    centre: Coordinates
    loss: float  # the centre's (its seeds' mean; NaN: not run yet)
    neighbours: tuple[Neighbour, ...]
    outcome: str  # searching | moved | extended | confirming | certified | edge | diverged
    ladders: Mapping[str, tuple]  # the ladders of this step (after an extension: the grown ones)
    moved_to: Coordinates | None = None
    edge: tuple[str, ...] = ()  # the ladder ends the centre sits at: "epochs+", "weight_decay-"
    seeds: tuple[float, ...] = ()  # the centre's seed losses (seed 0 first); empty: not run
    noise: float = math.nan  # the seed spread of this neighbourhood (NaN: no point of it has two seeds)
    neighbourhood: str = ""  # the moves checked, in words

    def neighbour_point(self, n: Neighbour) -> Coordinates | None:
        return None if n.values is None else {**self.centre, **dict(zip(n.axes, n.values))}


@dataclass(frozen=True)
class SearchPath:
    steps: tuple[Step, ...]
    missing: tuple[Coordinates, ...] = ()  # to run now: the centre's neighbourhood not run yet
    speculative: tuple[Coordinates, ...] = ()  # likely next: the neighbourhood of the best point so far
    confirming: Coordinates | None = None  # to run now: this centre's extra seeds (`confirm_seeds`)
    confirmed: tuple[Coordinates, ...] = ()  # every point with extra seeds the walk asked for or saw, in order

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


@dataclass(frozen=True)
class Neighbourhood:
    """Which moves a walk checks around a centre (`recipes.neighbourhood_moves`), and how many extra
    seeds a centre gets before it is certified."""

    coupled: tuple[tuple[str, str], ...] = ()
    full: bool = False
    confirm_seeds: int = 0
    certify_radius: int = 1  # 2: before certifying, the ring two steps out on each coupled pair too

    def moves(self, axes: Sequence[str], wide: bool = False) -> tuple[Move, ...]:
        return neighbourhood_moves(axes, self.coupled, self.full, self.certify_radius if wide else 1)

    def words(self, axes: Sequence[str], wide: bool = False) -> str:
        return neighbourhood_words(axes, self.coupled, self.full, self.certify_radius if wide else 1)


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
    neighbourhood: Neighbourhood = Neighbourhood(),
    max_steps: int = 10_000,
) -> SearchPath:
    """Walk from `start` until a step needs runs that `loss_of` does not have, or the walk ends.

    `cost(point)` breaks ties between equal losses (the cheaper wins; default: none). `valid(axis,
    value)` says whether an extended ladder value is allowed (e.g. epochs >= 1). `original`: the
    ladders extensions are counted from (default `ladders`), at most `max_extensions` per end.
    `neighbourhood`: the moves checked (default: each axis alone) and the centre's confirmation seeds.
    """
    ladders = {axis: tuple(values) for axis, values in ladders.items()}
    original = {axis: tuple(values) for axis, values in (original or ladders).items()}
    centre, steps, confirmed, wide = dict(start), [], [], False
    for _ in range(max_steps):
        step, measured = _neighbourhood(ladders, centre, loss_of, neighbourhood, wide)
        confirmed += [p for p, seeds in measured if seeds is not None and len(seeds) > 1 and p not in confirmed]
        missing = [p for p, seeds in measured if seeds is None]
        if missing:
            steps.append(replace(step, outcome=SEARCHING))
            speculative = _speculative(step, measured, ladders, loss_of, cost, missing, neighbourhood)
            return SearchPath(tuple(steps), tuple(missing), speculative, confirmed=tuple(confirmed))
        best = _best(measured, centre, ladders, cost, step.noise)
        if best != centre:
            steps.append(replace(step, outcome=MOVED, moved_to=best))
            centre, wide = best, False
            continue
        if not math.isfinite(step.loss):
            steps.append(replace(step, outcome=DIVERGED))
            return SearchPath(tuple(steps), confirmed=tuple(confirmed))
        grown = _extended(ladders, step.edge, original, max_extensions, valid) if extend_edges and step.edge else None
        if grown is not None:
            steps.append(replace(step, outcome=EXTENDED, ladders=grown))
            ladders = grown
            continue
        if neighbourhood.certify_radius > 1 and not wide:
            wide = True  # the best of its neighbourhood: look wider before certifying it (no step of its own)
            continue
        if neighbourhood.confirm_seeds:
            confirmed += [centre] if centre not in confirmed else []
            if len(step.seeds) < 1 + neighbourhood.confirm_seeds:
                steps.append(replace(step, outcome=CONFIRMING))
                return SearchPath(tuple(steps), confirming=centre, confirmed=tuple(confirmed))
        steps.append(replace(step, outcome=EDGE if step.edge else CERTIFIED))
        return SearchPath(tuple(steps), confirmed=tuple(confirmed))
    raise RuntimeError(f"the search took more than {max_steps} steps; this is a bug (a walk cannot cycle)")


Measured = list[tuple[Coordinates, "tuple[float, ...] | None"]]  # (point, its seeds' losses or None), centre first


def _seeds(point: Coordinates, loss_of: LossOf) -> tuple[float, ...] | None:
    """A point's seed losses (inf for DIVERGED or FAILED); None when its first seed has not run."""
    value = loss_of(point)
    if value is None:
        return None
    values = (value,) if isinstance(value, (int, float)) else tuple(value)
    if not values:
        return None
    return tuple(float(v) if math.isfinite(v) else math.inf for v in values)


def _mean(seeds: tuple[float, ...]) -> float:
    return math.inf if any(math.isinf(v) for v in seeds) else float(np.mean(seeds))


def _neighbourhood(
    ladders: dict[str, tuple], centre: Coordinates, loss_of: LossOf, neighbourhood: Neighbourhood, wide: bool = False,
) -> tuple[Step, Measured]:
    """The centre's step (outcome not decided yet) and the seed losses of the centre and of every
    neighbour on the ladders (None: not run)."""
    axes = list(ladders)
    at = {axis: ladder.index(centre[axis]) for axis, ladder in ladders.items()}
    centre_seeds = _seeds(centre, loss_of)
    measured: Measured = [(centre, centre_seeds)]
    placed = []  # (move, point or None beyond a ladder's end, seeds)
    for move in neighbourhood.moves(axes, wide):
        index = {axis: at[axis] + side for axis, side in move}
        inside = all(0 <= j < len(ladders[a]) for a, j in index.items())
        point = {**centre, **{a: ladders[a][j] for a, j in index.items()}} if inside else None
        seeds = _seeds(point, loss_of) if point is not None else None
        placed.append((move, point, seeds))
        if point is not None:
            measured.append((point, seeds))
    noise = spread_of([np.asarray(s) for _, s in measured if s is not None and len(s) > 1 and math.isfinite(_mean(s))])
    centre_loss = math.nan if centre_seeds is None else _mean(centre_seeds)
    neighbours = []
    for move, point, seeds in placed:
        loss = math.nan if seeds is None else _mean(seeds)
        if point is None:
            status = "edge"
        elif seeds is None:
            status = "missing"
        elif centre_seeds is None:
            status = RUN
        else:  # a centre with seeds of its own holds unless beaten beyond their noise
            margin = _margin(noise, len(centre_seeds), len(seeds)) if len(centre_seeds) > 1 else 0.0
            status = neighbour_status(centre_loss, loss, margin)
        neighbours.append(Neighbour(move, None if point is None else tuple(point[a] for a, _ in move), loss, status,
                                    0 if seeds is None else len(seeds)))
    edge = tuple(f"{a}{'-' if side < 0 else '+'}" for (move, point, _) in placed if point is None and len(move) == 1
                 for a, side in move)
    step = Step(centre=centre, loss=centre_loss, neighbours=tuple(neighbours), outcome=SEARCHING, ladders=ladders,
                edge=edge, seeds=centre_seeds or (), noise=noise, neighbourhood=neighbourhood.words(axes, wide))
    return step, measured


def _margin(noise: float, n_a: int, n_b: int) -> float:
    """How much lower than another a mean must be to beat it beyond the seed noise (0: noise unknown)."""
    return NOISE_Z * noise * math.sqrt(1 / n_a + 1 / n_b) if math.isfinite(noise) else 0.0


def _order(point: Coordinates, loss: float, centre: Coordinates, ladders: dict[str, tuple], cost) -> tuple:
    """Better first: lower loss, then cheaper, then the centre (no move on a full tie), then ladder order."""
    return (loss, cost(point) if cost else 0.0, point != centre, tuple(ladders[a].index(point[a]) for a in ladders))


def _best(measured: Measured, centre: Coordinates, ladders: dict[str, tuple], cost, noise: float = math.nan) -> Coordinates:
    """The point the walk moves to: the best of those run, if it beats the centre beyond the seed
    noise (without seeds, any better (loss, cost) does); else the centre."""
    ran = [(p, s) for p, s in measured if s is not None]
    best, seeds = min(ran, key=lambda ps: _order(ps[0], _mean(ps[1]), centre, ladders, cost))
    centre_seeds = measured[0][1]
    if best == centre or centre_seeds is None:
        return best
    margin = _margin(noise, len(centre_seeds), len(seeds)) if len(centre_seeds) > 1 else 0.0
    return best if margin == 0.0 or _mean(seeds) < _mean(centre_seeds) - margin else centre


def _speculative(step: Step, measured: Measured, ladders: dict[str, tuple], loss_of: LossOf, cost,
                 missing: list[Coordinates], neighbourhood: Neighbourhood) -> tuple[Coordinates, ...]:
    """While the centre waits for neighbours: if one that ran already beats it, that one's own
    neighbourhood (not run, not already asked for) is what the next step will most likely need."""
    if math.isnan(step.loss):
        return ()
    best = _best(measured, step.centre, ladders, cost, step.noise)
    if best == step.centre:
        return ()
    wanted = []
    for move in neighbourhood.moves(list(ladders)):
        index = {axis: ladders[axis].index(best[axis]) + side for axis, side in move}
        if not all(0 <= j < len(ladders[a]) for a, j in index.items()):
            continue
        point = {**best, **{a: ladders[a][j] for a, j in index.items()}}
        if point not in missing and point not in wanted and loss_of(point) is None:
            wanted.append(point)
    return tuple(wanted)


TREND_AXES = ("lr", "weight_decay")  # what a warm start moves along the smaller sizes' trend


def warm_start(
    ladders_of: Mapping[str, Sequence], size: float, optima: Sequence[tuple[float, Coordinates]],
    axes: Sequence[str] = TREND_AXES,
) -> Coordinates:
    """Where a model of `size` parameters starts its walk, from the optima of smaller ones ((size,
    optimum) pairs, the nearest last): the nearest optimum, with each of `axes` moved along the trend
    of the two nearest in log-size,

        log h = log h1 + (log h1 - log h0) (log N - log N1) / (log N1 - log N0),

    snapped to the ladder value nearest in log (the ladder's end beyond it). An axis not searched,
    with a value <= 0 in either optimum (weight decay 0: no trend in log), or a single smaller
    optimum, keeps the nearest optimum's value: what `from_smaller` did before it followed trends."""
    start = dict(optima[-1][1])
    if len(optima) < 2:
        return start
    (n0, low), (n1, high) = optima[-2], optima[-1]
    if not (0 < n0 < n1 < size):
        return start
    for axis in axes:
        ladder = [v for v in ladders_of.get(axis, ()) if isinstance(v, (int, float)) and v > 0]
        h0, h1 = low.get(axis), high.get(axis)
        if not ladder or not isinstance(h0, (int, float)) or not isinstance(h1, (int, float)) or h0 <= 0 or h1 <= 0:
            continue
        slope = (math.log(h1) - math.log(h0)) / (math.log(n1) - math.log(n0))
        target = math.log(h1) + slope * (math.log(size) - math.log(n1))
        start[axis] = min(ladder, key=lambda v: abs(math.log(v) - target))
    return start


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
    """One row per cell: its last step (outcome, centre and its loss, `edge_axes`, `seed_losses`), the
    cell's columns, `steps` taken and `trials`, the distinct trials the walk looked at (run or to run;
    a centre's extra seeds included)."""
    if steps.empty:
        return steps.assign(steps=[], trials=[])
    ordered = steps.sort_values(["cell_id", "step"])
    last = ordered.groupby("cell_id", sort=True).tail(1).set_index("cell_id")
    looked = ordered.groupby("cell_id", sort=True).apply(_trials_looked_at, include_groups=False)
    return last.assign(steps=ordered.groupby("cell_id", sort=True).size(), trials=looked).reset_index()


def _trials_looked_at(g: pd.DataFrame) -> int:
    ids = set(g["centre_trial_id"]) | {t for ids in g["neighbour_trial_ids"] for t in ids if t}
    seeds = g.groupby("centre_trial_id")["seed_losses"].agg(lambda s: max((len(v) for v in s if v is not None), default=1))
    return len(ids) + int((seeds - 1).clip(lower=0).sum())


def search_points(steps: pd.DataFrame) -> pd.DataFrame:
    """Every point a walk looked at, with its `epochs`, `weight_decay` and `lr` (a neighbour that
    moves along another axis is left out: it does not lie on those axes' planes) and `loss` (NaN: not
    run; inf: DIVERGED or FAILED): cell_id, step, role (centre | neighbour), the three axes, loss."""
    records = []
    for row in steps.itertuples():
        centre = {a: getattr(row, a) for a in PLANE_AXES}
        records.append({"cell_id": row.cell_id, "step": row.step, "role": "centre", **centre, "loss": row.loss})
        for words, loss in zip(row.neighbours, row.neighbour_losses):
            if words.endswith("(edge)"):
                continue
            moved = dict(part.partition("=")[::2] for part in words.split(", "))
            if moved and all(axis in PLANE_AXES and value for axis, value in moved.items()):
                records.append({"cell_id": row.cell_id, "step": row.step, "role": "neighbour",
                                **centre, **{a: float(v) for a, v in moved.items()}, "loss": loss})
    return pd.DataFrame(records, columns=["cell_id", "step", "role", *PLANE_AXES, "loss"])
