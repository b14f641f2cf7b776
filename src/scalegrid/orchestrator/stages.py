"""The stage graph of a sweep: members -> ensemble evaluation -> teacher corpus -> students.

    graph = build(spec, data_identity, results_dir)    # pure: no I/O, no Ray
    graph.trials      # train stage: every grid point, plus members 1..K-1 where ensembles ask
    graph.ensembles   # one EnsembleJob per grid point with an ensemble: rows for k = 1..K
    graph.corpora     # teacher corpora of sequence-level students, by content hash
    graph.students    # stage `distill` trials, each naming its teacher's members

Member m of a grid point is the grid point's TrialConfig with `member = m` (its seed draws the
initialisation and data order) and the ensemble's overrides applied to epochs and weight decay;
member 0 without overrides *is* the grid point's trial, and K = 4 reuses the members of K = 2.
An ensemble row's id hashes its members' ids and k, so a row is written once whatever K asked
for it. A teacher is members 0..k-1 of the grid point that `distill[i].teacher` names.

`run_stages` runs what the train stage made possible, each stage once its inputs are complete:
ensemble evaluations and teacher corpora as Ray tasks, students as Tune trials like any other.
A dependant of a member that FAILED or DIVERGED is *blocked*: listed with the reason, never run,
never a crash; the next run retries the member and then the dependants. `RESULTS/stages/<sweep>.json`
keeps the graph so that `scalegrid status` can say what is blocked without the spec.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from scalegrid import grid, store
from scalegrid.errors import UserError
from scalegrid.spec import AXES, SweepSpec, model_label
from scalegrid.storage import location
from scalegrid.trainers.base import Trial

SAVE_ALWAYS_PARAMS = 20_000_000  # the final weights of smaller lm trials are always kept: an ensemble added later reuses them
DONE = "COMPLETED"


@dataclass(frozen=True)
class EnsembleJob:
    """The ensembles of the first k = 1..K members of one grid point."""

    point: str  # the grid point, in words
    members: tuple[Trial, ...]

    @property
    def member_ids(self) -> list[str]:
        return [m.trial_id for m in self.members]

    def row_id(self, k: int) -> str:
        return ensemble_id(self.member_ids[:k])


@dataclass(frozen=True)
class CorpusJob:
    corpus_id: str
    teacher: tuple[Trial, ...]
    request: dict[str, Any]  # teacher ids, sequences, seq_len, temperature, seed


@dataclass
class StageGraph:
    trials: list[Trial]
    ensembles: list[EnsembleJob] = field(default_factory=list)
    corpora: list[CorpusJob] = field(default_factory=list)
    students: list[Trial] = field(default_factory=list)
    teachers: dict[str, tuple[Trial, ...]] = field(default_factory=dict)  # student id -> teacher members
    needs_weights: set[str] = field(default_factory=set)  # members and teachers: their models must exist

    def to_json(self) -> dict:
        return {
            "ensembles": [
                {"point": e.point, "members": e.member_ids, "rows": [e.row_id(k) for k in range(1, len(e.members) + 1)]}
                for e in self.ensembles
            ],
            "students": [
                {"trial_id": s.trial_id, "model": s.model_label, "method": s.config.distill["method"],
                 "teacher": [t.trial_id for t in self.teachers[s.trial_id]],
                 "corpus": s.config.distill.get("corpus")}
                for s in self.students
            ],
        }


def ensemble_id(member_ids: list[str]) -> str:
    return grid.content_hash({"stage": "ensemble", "members": list(member_ids), "k": len(member_ids)})


def _matches(point: dict[str, Any], selector: dict[str, Any]) -> bool:
    for axis, wanted in selector.items():
        values = wanted if isinstance(wanted, list) else [wanted]
        keys = {grid._axis_key(axis, v) for v in values}
        if grid._axis_key(axis, point[axis]) not in keys and not _number_in(point[axis], values):
            return False
    return True


def _number_in(value: Any, values: list) -> bool:
    if not isinstance(value, (int, float)):
        return False
    return any(isinstance(v, (int, float)) and math.isclose(float(v), float(value), rel_tol=1e-12) for v in values)


def _describe(point: dict[str, Any]) -> str:
    return ", ".join(f"{a}={model_label(point[a]) if a == 'model' else point[a]}" for a in AXES)


def build(spec: SweepSpec, data, *, results_dir: str) -> StageGraph:
    base = grid.expand(spec, data, results_dir=results_dir)
    by_id = {t.trial_id: t for t in base}
    points = [(p, grid.trial_id(grid.trial_config(spec, p, data))) for p in grid.grid_points(spec)]
    trials: dict[str, Trial] = {}

    def member(point: dict[str, Any], point_id: str, m: int, scaled: bool) -> Trial:
        plain = by_id[point_id]
        update: dict[str, Any] = {"member": m}
        if scaled:
            update["epochs"] = max(1, round(plain.config.epochs * spec.ensemble.epochs_scale))
            update["weight_decay"] = plain.config.weight_decay * spec.ensemble.weight_decay_scale
        config = plain.config.model_copy(update=update)
        tid = grid.trial_id(config)
        return trials.setdefault(tid, plain.model_copy(update={"trial_id": tid, "config": config}))

    # how many members each grid point needs: its ensemble's K, and any teacher's k
    in_ensemble = {}
    if spec.ensemble is not None:
        for point, pid in points:
            if not spec.ensemble.where or any(_matches(point, w) for w in spec.ensemble.where):
                in_ensemble[pid] = spec.ensemble.max_members
    teacher_points = []
    for i, d in enumerate(spec.distill):
        selector = {a: v for a, v in d.teacher.items() if a != "members"}
        found = [(p, pid) for p, pid in points if _matches(p, selector)]
        if len(found) != 1:
            which = "no grid point" if not found else f"{len(found)} grid points ({'; '.join(_describe(p) for p, _ in found[:2])}; ...)"
            raise UserError(f"distill[{i}].teacher: {selector} matches {which}; name one grid point by its axes")
        teacher_points.append(found[0])
        pid = found[0][1]
        in_ensemble[pid] = max(in_ensemble.get(pid, 0), d.teacher_members)

    scaled = spec.ensemble is not None and (spec.ensemble.epochs_scale != 1 or spec.ensemble.weight_decay_scale != 1)
    for t in base:
        trials[t.trial_id] = t
    graph = StageGraph(trials=[])
    members_of: dict[str, tuple[Trial, ...]] = {}
    for point, pid in points:
        if pid not in in_ensemble:
            continue
        ms = tuple(member(point, pid, m, scaled and pid in _ensemble_points(spec, points)) for m in range(in_ensemble[pid]))
        members_of[pid] = ms
        graph.ensembles.append(EnsembleJob(point=_describe(point), members=ms))
        graph.needs_weights.update(m.trial_id for m in ms)

    for i, (d, (point, pid)) in enumerate(zip(spec.distill, teacher_points)):
        teacher = members_of[pid][: d.teacher_members]
        student_point = {**point}
        for axis, value in d.student.items():
            student_point[axis] = _typed(spec, axis, value, f"distill[{i}].student.{axis}")
        config = grid.trial_config(spec, student_point, data)
        distill: dict[str, Any] = {"method": d.method, "teacher": [t.trial_id for t in teacher]}
        if d.method == "token":
            distill |= {"temperature": d.temperature, "kl_weight": d.kl_weight}
        else:
            seq_len = spec.train.seq_len
            real = config.unique_tokens // seq_len
            needed = round(d.synthetic_weight / (1 - d.synthetic_weight) * real)
            sequences = max(needed, math.ceil((d.synthetic_tokens or 0) / seq_len))
            request = {"teacher": distill["teacher"], "sequences": sequences, "seq_len": seq_len,
                       "temperature": d.sample_temperature, "seed": d.sample_seed}
            corpus_id = grid.content_hash({**request, "version": "teacher-corpus-v1"})
            if corpus_id not in {c.corpus_id for c in graph.corpora}:
                graph.corpora.append(CorpusJob(corpus_id, teacher, request))
            distill |= {"synthetic_weight": d.synthetic_weight, "corpus": corpus_id}
        config = config.model_copy(update={"distill": distill})
        tid = grid.trial_id(config)
        if tid in {s.trial_id for s in graph.students}:
            continue
        student = Trial(
            trial_id=tid, sweep=spec.name, model_label=model_label(student_point["model"]), config=config,
            results_dir=results_dir, data_dir=base[0].data_dir, stage="distill", fault_tolerance=spec.fault_tolerance,
        )
        graph.students.append(student)
        graph.teachers[tid] = teacher

    local = location(results_dir).local_path is not None
    if not local and (graph.ensembles or graph.students):
        raise UserError(
            f"results: {location(results_dir)}: ensemble: and distill: need a results directory on this machine "
            "or a shared mount (a path or file://) for now: members' weights and teacher corpora are local files"
        )
    for tid, t in trials.items():
        keep = local and (tid in graph.needs_weights or grid.num_params(t.config) <= SAVE_ALWAYS_PARAMS)
        graph.trials.append(t.model_copy(update={"save_model": keep}) if keep != t.save_model else t)
    return graph


def _ensemble_points(spec: SweepSpec, points) -> set[str]:
    if spec.ensemble is None:
        return set()
    return {pid for p, pid in points if not spec.ensemble.where or any(_matches(p, w) for w in spec.ensemble.where)}


def _typed(spec: SweepSpec, axis: str, value: Any, where: str) -> Any:
    """One student axis value, validated by the spec's own axis validators."""
    raw = spec.model_dump(mode="json") | {"include": [], "exclude": [], "distill": [], "ensemble": None}
    if axis == "unique_tokens":
        raw["data"] = raw["data"] | {"unique_tokens": value}
    else:
        raw[axis] = value
    try:
        typed = SweepSpec.model_validate(raw)
    except Exception as err:  # noqa: BLE001 - pydantic's message, one line
        message = getattr(err, "errors", lambda: [{"msg": str(err)}])()[0]["msg"].removeprefix("Value error, ")
        raise UserError(f"{where}: {message}") from None
    return grid._axis_values(typed, axis)[0]


# --- status -----------------------------------------------------------------------------------


def statuses(results_dir: Path) -> tuple[dict[str, str], set[str]]:
    """(trial_id -> last status of runs/ rows, ids of COMPLETED ensemble rows)."""
    runs = store.scan_runs(results_dir).frame
    ensembles = store.scan_ensembles(results_dir).frame
    status = dict(zip(runs["trial_id"], runs["status"])) if len(runs) else {}
    done_rows = set(ensembles.loc[ensembles["status"] == DONE, "trial_id"]) if len(ensembles) else set()
    return status, done_rows


def _blocker(member_ids: list[str], status: dict[str, str]) -> str | None:
    bad = [f"{tid} {status[tid]}" for tid in member_ids if status.get(tid) in ("FAILED", "DIVERGED")]
    return f"member {', '.join(bad)}" if bad else None


def dependants(graph_json: dict, status: dict[str, str], ensemble_rows: set[str], results_dir: Path) -> pd.DataFrame:
    """One row per ensemble job and student: what, state (done | pending | blocked) and why."""
    rows = []
    for e in graph_json.get("ensembles", []):
        blocked = _blocker(e["members"], status)
        state = "done" if set(e["rows"]) <= ensemble_rows else "blocked" if blocked else "pending"
        rows.append({"stage": "ensemble", "what": f"K={len(e['members'])} at {e['point']}", "id": e["rows"][-1],
                     "state": state, "why": blocked if state == "blocked" else ""})
    for s in graph_json.get("students", []):
        blocked = _blocker(s["teacher"], status)
        own = status.get(s["trial_id"])
        state = "done" if own in store.DONE_STATUSES else "blocked" if blocked else "failed" if own == "FAILED" else "pending"
        rows.append({"stage": "distill", "what": f"{s['model']} ({s['method']}) from k={len(s['teacher'])}",
                     "id": s["trial_id"], "state": state, "why": f"teacher {blocked}" if state == "blocked" else ""})
    return pd.DataFrame(rows, columns=["stage", "what", "id", "state", "why"])


def graph_path(results_dir: Path, sweep: str) -> Path:
    return Path(results_dir) / "stages" / f"{sweep}.json"


def write_graph(results_dir: Path, sweep: str, graph: StageGraph) -> Path | None:
    """The sweep's ensembles and students for `status`; a spec without them removes the old file."""
    path = graph_path(results_dir, sweep)
    if not graph.ensembles and not graph.students:
        path.unlink(missing_ok=True)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(graph.to_json(), indent=2, sort_keys=True))
    tmp.replace(path)
    return path


def read_graphs(results_dir: Path) -> dict:
    merged: dict[str, list] = {"ensembles": [], "students": []}
    for path in sorted((Path(results_dir) / "stages").glob("*.json")):
        try:
            graph = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for key in merged:
            merged[key] += graph.get(key, [])
    return merged


# --- running the stages -------------------------------------------------------------------------


def ensemble_rows(job: EnsembleJob, losses: list[float], seconds: float, error: str | None, provenance: dict) -> list[dict]:
    """Runs-table rows (stage `ensemble`, members = k) of one job: the grid point's columns, the
    members' size, and `member_trial_ids`."""
    first = job.members[0]
    c = first.config
    params = grid.num_params(c)
    rows = []
    for k in range(1, len(job.members) + 1):
        loss = losses[k - 1] if losses else math.nan
        rows.append({
            "trial_id": job.row_id(k), "sweep": first.sweep, "stage": "ensemble",
            "status": "FAILED" if error else DONE, "trainer": c.trainer, "model": first.model_label,
            "params": params, "params_nonembed": grid.model_shape(c.model).num_params(c.data.get("vocab_size", 0), non_embedding=True),
            "unique_tokens": c.unique_tokens, "epochs": c.epochs, "tokens_seen": k * grid.tokens_seen(c),
            "lr": c.lr, "weight_decay": c.weight_decay, "seed": c.seed, "members": k, "member": None,
            "val_loss": loss, "best_val_loss": loss, "train_loss": math.nan,
            "flops": k * grid.estimated_flops(c), "wall_s": seconds, "error": error,
            "finished_at": dt.datetime.now(dt.timezone.utc),
            "config_json": grid.canonical_json({"stage": "ensemble", "members": job.member_ids[:k]}),
            "scalegrid_version": provenance.get("scalegrid_version"), "git_commit": provenance.get("git_commit"),
            "hostname": platform.node(), "device": "cpu", "member_trial_ids": job.member_ids[:k],
        })
    return rows


def evaluate_ensemble(job: EnsembleJob, provenance: dict, done: frozenset[str] = frozenset()) -> dict:
    """The Ray task body: one pass per member; each k's row not in `done` written (FAILED on an error)."""
    import os
    import traceback

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    start = time.perf_counter()
    losses, own, per_member, error = [], [], [], None
    try:
        import torch

        from scalegrid.trainers.ensemble import evaluate_members
        from scalegrid.trainers.lm import load_sequences

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        _, val_seqs, _ = load_sequences(job.members[0], device)
        losses, own, per_member = evaluate_members(job.member_ids, job.members[0].results_dir, val_seqs, job.members[0].config.train.batch_size)
    except Exception as err:  # noqa: BLE001 - a missing model or a bug fails this ensemble only
        error = traceback.format_exception_only(type(err), err)[-1].strip()[:2000]
    seconds = time.perf_counter() - start
    for row in ensemble_rows(job, losses, seconds, error, provenance):
        if row["trial_id"] not in done:  # a row is its members: written once, whatever K asked for it
            store.write_ensemble(job.members[0].results_dir, row)
    return {"point": job.point, "losses": losses, "own": own, "seconds_per_member": per_member, "seconds": seconds, "error": error}


def run_stages(plan, provenance: dict, *, max_concurrent: int | None = None) -> None:
    """After the train stage: ensemble evaluations, teacher corpora, then students, each once its
    inputs are complete; blocked dependants are printed, not run."""
    import ray

    graph: StageGraph = plan.graph
    results = plan.results_dir
    status, done_rows = statuses(results)

    def weights_ok(ids) -> bool:
        return all(status.get(t) == DONE and (results / "models" / t / "config.json").is_file() for t in ids)

    todo = [e for e in graph.ensembles if not {e.row_id(k) for k in range(1, len(e.members) + 1)} <= done_rows]
    ready = [e for e in todo if weights_ok(e.member_ids)]
    for e in todo:
        if e not in ready:
            _say_blocked("ensemble", e.point, e.member_ids, status)
    cpus = plan.spec.resources.cpus
    if ready:
        task = ray.remote(num_cpus=cpus)(evaluate_ensemble)
        for out in ray.get([task.remote(e, provenance, frozenset(done_rows)) for e in ready]):
            if out["error"]:
                print(f"ensemble at {out['point']}: FAILED ({out['error']})", file=sys.stderr)
            else:
                print(
                    f"ensemble at {out['point']}: K={len(out['losses'])} in {out['seconds']:.1f} s "
                    f"({', '.join(f'{s:.2f}' for s in out['seconds_per_member'])} s per member); "
                    f"loss by k {', '.join(f'{v:.4f}' for v in out['losses'])}",
                    file=sys.stderr,
                )

    corpora = [c for c in graph.corpora if weights_ok(c.request["teacher"])]
    if corpora:
        from scalegrid.trainers.distill import corpus_dir

        missing = [c for c in corpora if not (corpus_dir(results, c.corpus_id) / "meta.json").is_file()]
        if missing:
            task = ray.remote(num_cpus=cpus)(_make_corpus)
            for meta in ray.get([task.remote(str(results), c.corpus_id, c.request, plan.graph.trials[0].data_dir) for c in missing]):
                print(
                    f"teacher corpus {meta['id']}: {meta['tokens']:,} tokens from k={len(meta['teacher'])} in "
                    f"{meta['seconds']:.1f} s ({meta['tokens_per_s']:,.0f} tokens/s, {meta['device']}, KV cache)",
                    file=sys.stderr,
                )

    done = store.done_trial_ids(store.scan_runs(results).frame)
    students = [s for s in graph.students if s.trial_id not in done]
    runnable = []
    for s in students:
        teacher = [t.trial_id for t in graph.teachers[s.trial_id]]
        corpus = s.config.distill.get("corpus")
        if weights_ok(teacher) and (corpus is None or _corpus_ready(results, corpus)):
            runnable.append(s)
        else:
            _say_blocked("student", s.model_label, teacher, status)
    if runnable:
        from scalegrid.orchestrator.runner import schedule

        schedule(plan, provenance, max_concurrent=max_concurrent, trials=runnable)


def _make_corpus(results: str, corpus_id: str, request: dict, data_dir: str) -> dict:
    from scalegrid.trainers.distill import make_corpus

    return make_corpus(results, corpus_id, request, data_dir)


def _corpus_ready(results: Path, corpus_id: str) -> bool:
    from scalegrid.trainers.distill import corpus_dir

    return (corpus_dir(results, corpus_id) / "meta.json").is_file()


def _say_blocked(what: str, where: str, member_ids: list[str], status: dict[str, str]) -> None:
    why = _blocker(member_ids, status)
    state = f"blocked: {'teacher ' if what == 'student' else ''}{why}" if why else "waiting for its members"
    print(f"{what} {where}: {state}", file=sys.stderr)
