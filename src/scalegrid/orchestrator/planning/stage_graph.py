"""The stage graph of a sweep: members -> ensemble evaluation -> teacher corpus -> students -> downstream evaluation.

    graph = build(spec, data_identity, results)    # pure: no I/O, no Ray
    graph.trials      # train stage: every grid point, plus members 1..K-1 where ensembles ask,
                      # and the adaptive runs and their fixed epoch counts where `adaptive:` asks
    graph.ensembles   # one EnsembleJob per grid point with an ensemble: rows for k = 1..K
    graph.corpora     # teacher corpora of sequence-level students, by content hash
    graph.students    # stage `distill` trials, each naming its teacher's members
    graph.cells       # the grid's points by cell (the axes a search could tune varied): `evaluate.which: best`
                      # picks each cell's best once they have run (`evaluations.py`)

Member m of a grid point is the grid point's TrialConfig with `member = m` (its seed draws the
initialisation and data order) and the ensemble's overrides applied to epochs and weight decay;
member 0 without overrides *is* the grid point's trial, and K = 4 reuses the members of K = 2.
An ensemble row's id hashes its members' ids and k (`grid.ensemble_id`), so a row is written once
whatever K asked for it. A teacher is members 0..k-1 of the grid point that `distill[i].teacher`
names. `dependants` says, from the store's statuses, which ensembles and students are done,
pending or blocked (a member FAILED or DIVERGED).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from scalegrid import grid
from scalegrid.errors import UserError
from scalegrid.spec import AXES, SEARCHABLE, Distillation, Point, Sweep
from scalegrid.storage import ResultsLayout
from scalegrid.trial import (
    DONE_STATUSES,
    DataIdentity,
    SequenceDistill,
    Stage,
    Status,
    CORPUS_VERSION,
    TeacherCorpusRequest,
    TokenDistill,
    Trial,
    TrialConfig,
)



@dataclass(frozen=True)
class EnsembleJob:
    """The ensembles of the first k = 1..K members of one grid point."""

    point: str  # the grid point, in words
    members: tuple[Trial, ...]
    combine: str = "probs"  # spec.ensemble.combine: probabilities or logits averaged

    @property
    def member_ids(self) -> list[str]:
        return [m.trial_id for m in self.members]

    def row_id(self, k: int) -> str:
        return grid.ensemble_id(self.member_ids[:k], self.combine)

    @property
    def row_ids(self) -> list[str]:
        return [self.row_id(k) for k in range(1, len(self.members) + 1)]


@dataclass(frozen=True)
class CorpusJob:
    corpus_id: str
    request: TeacherCorpusRequest


@dataclass(frozen=True)
class Cell:
    """A cell's points: one value of every axis a search could not tune; its best is evaluated."""

    label: str  # the cell in words: model=llama-50k, unique_tokens=2048, seed=0
    candidates: tuple[Trial, ...]  # a grid's points of the cell; a search's: its optimum alone


@dataclass
class StageGraph:
    trials: list[Trial]
    ensembles: list[EnsembleJob] = field(default_factory=list)
    corpora: list[CorpusJob] = field(default_factory=list)
    students: list[Trial] = field(default_factory=list)
    needs_weights: set[str] = field(default_factory=set)  # members, teachers and evaluated students: their models must exist
    cells: list[Cell] = field(default_factory=list)

    @property
    def teachers(self) -> dict[str, tuple[Trial, ...]]:
        """student trial_id -> its teacher's members."""
        by_id = {t.trial_id: t for t in self.trials}
        return {s.trial_id: tuple(by_id[tid] for tid in s.config.distill.teacher) for s in self.students}

    @property
    def has_stages(self) -> bool:
        return bool(self.ensembles or self.students)

    def to_json(self) -> dict:
        return {
            "ensembles": [{"point": e.point, "members": e.member_ids, "rows": e.row_ids} for e in self.ensembles],
            "students": [
                {"trial_id": s.trial_id, "model": s.model_label, "method": s.config.distill.method,
                 "teacher": list(s.config.distill.teacher), "corpus": getattr(s.config.distill, "corpus", None)}
                for s in self.students
            ],
        }


def build(
    sweep: Sweep, data: DataIdentity, results: ResultsLayout | None = None, *, points: list[tuple[Point, Trial]] | None = None,
) -> StageGraph:
    """The graph over the grid's points (`points`: other ones, e.g. the optima a search found)."""
    points = points if points is not None else grid.point_trials(sweep, data, results)
    results = points[0][1].results
    trials = {t.trial_id: t for _, t in points}
    in_ensemble = _ensemble_points(sweep, points)
    members_needed, teacher_points = _members_needed(sweep, points, in_ensemble)
    graph = StageGraph(trials=[])
    members_of: dict[str, tuple[Trial, ...]] = {}
    for point, plain in points:
        if plain.trial_id not in members_needed or plain.trial_id in members_of:
            continue
        scaled = plain.trial_id in in_ensemble
        members = tuple(_member(sweep, plain, m, scaled) for m in range(members_needed[plain.trial_id]))
        for m in members:
            trials.setdefault(m.trial_id, m)
        members_of[plain.trial_id] = members
        graph.ensembles.append(EnsembleJob(point=_describe(point), members=members, combine=_combine(sweep, len(members))))
        graph.needs_weights.update(m.trial_id for m in members)
    for trial in _adaptive_trials(sweep, points):
        trials.setdefault(trial.trial_id, trial)
    for d, (point, plain) in zip(sweep.distill, teacher_points):
        _add_student(graph, sweep, data, results, d, point, members_of[plain.trial_id][: d.teacher_members])
    for tid, t in trials.items():
        keep = tid in graph.needs_weights or (sweep.trainer == "lm" and sweep.keep_weights)
        graph.trials.append(t.model_copy(update={"save_model": keep}) if keep != t.save_model else t)
    evaluated = sweep.evaluate is not None and "students" in sweep.evaluate.which
    graph.students = [s.model_copy(update={"save_model": True}) if evaluated or sweep.keep_weights else s for s in graph.students]
    graph.needs_weights.update(s.trial_id for s in graph.students if evaluated)
    graph.cells = _cells(points, {t.trial_id: t for t in graph.trials})
    return graph


def _cells(points: list[tuple[Point, Trial]], trials: dict[str, Trial]) -> list[Cell]:
    """The points grouped by the axes a search could not tune (model, unique_tokens, seed), in spec order."""
    groups: dict[tuple, tuple[Point, list[Trial]]] = {}
    for point, trial in points:
        cell = point.without(SEARCHABLE)
        groups.setdefault(cell.key, (cell, []))[1].append(trials.get(trial.trial_id, trial))
    return [Cell(cell.words(), tuple({t.trial_id: t for t in members}.values())) for cell, members in groups.values()]


def _adaptive_trials(sweep: Sweep, points: list[tuple[Point, Trial]]) -> list[Trial]:
    """`adaptive:`: at each point it picks, the point's trial at every fixed epoch count of
    `epochs`, and at `max` epochs with each stop rule (`train.stop`)."""
    if sweep.adaptive is None:
        return []
    recipe, where, out, used = sweep.adaptive.recipe, sweep.adaptive.where, [], set()
    for point, plain in points:
        hits = {i for i, selector in enumerate(where) if selector.matches(point)}
        used |= hits
        if where and not hits:
            continue
        updates = [{"epochs": e} for e in recipe.epochs]
        updates += [{"epochs": recipe.max, "train": plain.config.train.model_copy(update={"stop": stop})} for stop in recipe.stop]
        for update in updates:
            config = plain.config.model_copy(update=update)
            out.append(plain.model_copy(update={"trial_id": grid.trial_id(config), "config": config}))
    grid.refuse_unmatched(where, used)
    return out


def _ensemble_points(sweep: Sweep, points: list[tuple[Point, Trial]]) -> set[str]:
    """The trial ids of the grid points that `ensemble.where` picks (all when it is empty)."""
    if sweep.ensemble is None:
        return set()
    if not sweep.ensemble.where:
        return {t.trial_id for _, t in points}
    picked, used = set(), set()
    for point, trial in points:
        hits = {i for i, where in enumerate(sweep.ensemble.where) if where.matches(point)}
        used |= hits
        if hits:
            picked.add(trial.trial_id)
    grid.refuse_unmatched(sweep.ensemble.where, used)
    return picked


def _members_needed(
    sweep: Sweep, points: list[tuple[Point, Trial]], in_ensemble: set[str]
) -> tuple[dict[str, int], list[tuple[Point, Trial]]]:
    """(grid point's trial_id -> members it needs: its ensemble's K and any teacher's k, each
    student's teacher grid point)."""
    needed = {tid: sweep.ensemble.max_members for tid in in_ensemble}
    teacher_points = []
    for d in sweep.distill:
        found = list({t.trial_id: (p, t) for p, t in points if d.teacher.matches(p)}.values())
        if len(found) != 1:
            which = "no grid point" if not found else f"{len(found)} grid points ({'; '.join(_describe(p) for p, _ in found[:2])}; ...)"
            raise UserError(f"{d.teacher.where}: {d.teacher.written} matches {which}; name one grid point by its axes")
        teacher_points.append(found[0])
        tid = found[0][1].trial_id
        needed[tid] = max(needed.get(tid, 0), d.teacher_members)
    return needed, teacher_points


def _member(sweep: Sweep, plain: Trial, m: int, in_ensemble: bool) -> Trial:
    """Member m of a grid point: its seed differs; an ensemble's members get the ensemble's overrides."""
    update: dict[str, int | float] = {"member": m}
    e = sweep.ensemble.recipe if sweep.ensemble is not None else None
    if in_ensemble and (e.epochs_scale != 1 or e.weight_decay_scale != 1):
        update["epochs"] = max(1, round(plain.config.epochs * e.epochs_scale))
        update["weight_decay"] = plain.config.weight_decay * e.weight_decay_scale
    return member_trial(plain, update)


def member_trial(plain: Trial, update: dict[str, int | float]) -> Trial:
    """The grid point's trial with `update` (`member`: another seed of it, and any overrides), hashed."""
    config = plain.config.model_copy(update=update)
    tid = grid.trial_id(config)
    return plain if tid == plain.trial_id else plain.model_copy(update={"trial_id": tid, "config": config})


def _add_student(
    graph: StageGraph, sweep: Sweep, data: DataIdentity, results: ResultsLayout,
    d: Distillation, point: Point, teacher: tuple[Trial, ...],
) -> None:
    student_point = point | d.student
    config = grid.trial_config(sweep, student_point, data)
    teacher_ids = tuple(t.trial_id for t in teacher)
    combine = _combine(sweep, len(teacher_ids))
    r = d.recipe
    if r.method == "token":
        distill = TokenDistill(teacher=teacher_ids, temperature=r.temperature, kl_weight=r.kl_weight, combine=combine)
    else:
        corpus = _corpus_job(sweep, d, config, teacher_ids, combine)
        if corpus.corpus_id not in {c.corpus_id for c in graph.corpora}:
            graph.corpora.append(corpus)
        distill = SequenceDistill(teacher=teacher_ids, synthetic_weight=r.synthetic_weight, corpus=corpus.corpus_id, combine=combine)
    config = config.model_copy(update={"distill": distill})
    tid = grid.trial_id(config)
    if tid in {s.trial_id for s in graph.students}:
        return
    graph.students.append(Trial(
        trial_id=tid, sweep=sweep.name, model_label=student_point["model"].label, config=config,
        results=results, data_key=teacher[0].data_key, data_spec=teacher[0].data_spec, stage=Stage.DISTILL,
        fault_tolerance=sweep.fault_tolerance,
        resources=sweep.resources,
    ))


def _combine(sweep: Sweep, k: int) -> str:
    """How k members are averaged: the spec's `ensemble.combine`; one model has nothing to average."""
    return sweep.ensemble.recipe.combine if sweep.ensemble is not None and k > 1 else "probs"


def _corpus_job(sweep: Sweep, d: Distillation, config: TrialConfig, teacher_ids: tuple[str, ...], combine: str) -> CorpusJob:
    """The teacher corpus a sequence-level student needs: w / (1 - w) times its real sequences."""
    seq_len, r = sweep.train.seq_len, d.recipe
    real = config.unique_tokens // seq_len
    needed = round(r.synthetic_weight / (1 - r.synthetic_weight) * real)
    sequences = max(needed, math.ceil((r.synthetic_tokens or 0) / seq_len))
    request = TeacherCorpusRequest(
        teacher=teacher_ids, sequences=sequences, seq_len=seq_len, temperature=r.sample_temperature, seed=r.sample_seed,
        combine=combine,
    )
    return CorpusJob(grid.content_hash({**grid.identity(request), "version": CORPUS_VERSION}), request)


def _describe(point: Point) -> str:
    return point.words(AXES)


# --- what is done, pending or blocked ---------------------------------------------------------------


def blocker(member_ids: list[str], status: dict[str, str]) -> str | None:
    """Why dependants of these members cannot run: the members that FAILED or DIVERGED."""
    bad = [f"{tid} {status[tid]}" for tid in member_ids if status.get(tid) in (Status.FAILED.value, Status.DIVERGED.value)]
    return f"member {', '.join(bad)}" if bad else None


def dependants(
    graph_json: dict, status: dict[str, str], ensemble_rows: set[str], has_model: Callable[[str], bool] = lambda tid: True,
) -> pd.DataFrame:
    """One row per ensemble job and student: what, state (done | pending | blocked | failed) and why
    (a pending one says what it waits for)."""
    rows = []
    for e in graph_json.get("ensembles", []):
        blocked = blocker(e["members"], status)
        state = "done" if set(e["rows"]) <= ensemble_rows else "blocked" if blocked else "pending"
        why = blocked if state == "blocked" else waiting_for(e["members"], status, has_model) if state == "pending" else ""
        rows.append({"stage": "ensemble", "what": f"K={len(e['members'])} at {e['point']}", "id": e["rows"][-1],
                     "state": state, "why": why})
    for s in graph_json.get("students", []):
        blocked = blocker(s["teacher"], status)
        own = status.get(s["trial_id"])
        state = "done" if own in DONE_STATUSES else "blocked" if blocked else "failed" if own == Status.FAILED.value else "pending"
        why = f"teacher {blocked}" if state == "blocked" else waiting_for(s["teacher"], status, has_model) if state == "pending" else ""
        rows.append({"stage": "distill", "what": f"{s['model']} ({s['method']}) from k={len(s['teacher'])}",
                     "id": s["trial_id"], "state": state, "why": why})
    return pd.DataFrame(rows, columns=["stage", "what", "id", "state", "why"])


def waiting_for(member_ids: list[str], status: dict[str, str], has_model: Callable[[str], bool]) -> str:
    """What a pending ensemble or student waits for: members to train, or their saved weights."""
    untrained = [tid for tid in member_ids if status.get(tid) not in DONE_STATUSES]
    if untrained:
        return f"{len(untrained)} of its {len(member_ids)} members to train ({untrained[0]}, ...): `scalegrid run` trains them"
    unsaved = [tid for tid in member_ids if not has_model(tid)]
    if unsaved:
        return f"the saved weights of member {unsaved[0]}: `scalegrid run` trains it again and keeps them"
    return "its turn: `scalegrid run` makes it"
