"""Results directories synthesised from known laws, written through the real store.

The paper grid (`write_paper_grid`): sizes N x token budgets D x epochs x weight decay x lr, with

    best loss(N, D)    = E(D) + A / N^alpha                 E(D) = E_inf + B / D^beta
    loss(N, D, h)      = best loss(N, D) + quadratic penalties in log2 of each hyperparameter's
                         distance from its optimum (zero at the optimum, which is on the grid)
    ensemble of K      = E(D) - G + A / N^alpha + G / K^kappa   (joint asymptote E(D) - G)
    distilled student  = single - retention (single - teacher)
    downstream accuracy = 0.3 + 0.5 (the largest loss - loss) / (its range): falling with the loss

plus a little Gaussian noise, so every fitted number the report shows has a known true value. With
`signals`, seeds/000's measurements too: memorisation on every train run, per-epoch diagnostics on
the learning curves, and adaptive runs (`write_adaptive_runs`) at each size's optimum.
The reuse grid (`write_reuse_grid`) is the multi-epoch testbed: a loss over (samples N, epochs K)
that follows Muennighoff et al.'s effective data with an R* that grows like log N.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scalegrid import store
from scalegrid.storage import layout
from scalegrid.store import RUN_COLUMNS


@dataclass(frozen=True)
class PaperLaw:
    E_inf: float = 1.8
    B: float = 1286.0
    beta: float = 0.35
    A: float = 291.0
    alpha: float = 0.35
    G: float = 0.2  # ensemble gain at infinitely many members
    kappa: float = 0.9
    retention: float = 0.83
    lr_opt: float = 3e-3

    def asymptote(self, tokens: float) -> float:
        return self.E_inf + self.B / tokens**self.beta

    def best(self, params: float, tokens: float) -> float:
        return self.asymptote(tokens) + self.A / params**self.alpha

    def epochs_opt(self, params: float) -> int:
        """Larger models want fewer epochs (the paper's finding): 8 up to 300M, then 4."""
        return 8 if params <= 3.5e8 else 4

    def wd_opt(self, params: float) -> float:
        """... and more weight decay: 0.4 at 150M, 0.8 up to 600M, 1.6 beyond."""
        return 0.4 if params <= 2e8 else 0.8 if params <= 7e8 else 1.6

    def loss(self, params: float, tokens: float, epochs: int, wd: float, lr: float) -> float:
        penalty = (
            0.02 * math.log2(epochs / self.epochs_opt(params)) ** 2
            + 0.03 * math.log2(wd / self.wd_opt(params)) ** 2
            + 0.05 * math.log2(lr / self.lr_opt) ** 2
        )
        return self.best(params, tokens) + penalty

    def ensemble(self, params: float, tokens: float, members: int) -> float:
        return self.asymptote(tokens) - self.G + self.A / params**self.alpha + self.G / members**self.kappa


SIZES = (150e6, 300e6, 600e6, 1.4e9)
BUDGETS = (200e6, 400e6, 800e6, 1.6e9)
EPOCHS = (1, 2, 4, 8, 16)
WEIGHT_DECAYS = (0.1, 0.2, 0.4, 0.8, 1.6)
LRS = (1e-3, 3e-3, 1e-2)
MEMBERS = (2, 3, 4, 5)


@dataclass
class Written:
    """What was written, for the tests' checks."""

    law: PaperLaw
    n_rows: int = 0
    trial_ids: list[str] = field(default_factory=list)
    curve_ids: list[str] = field(default_factory=list)
    failed_ids: list[str] = field(default_factory=list)


def _tid(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def _model_name(params: float) -> str:
    return f"llama-{params / 1e6:.0f}m"


def write_run(results: Path, row: store.RunRow) -> None:
    store.write_run(layout(results), row)


def write_curves(results: Path, trial_id: str, rows: list[dict]) -> None:
    store.write_curves(layout(results), trial_id, rows)


def base_row(**values) -> store.RunRow:
    row = {c: None for c in RUN_COLUMNS}
    row.update(
        sweep="paper", stage="train", status="COMPLETED", trainer="lm", seed=0, members=1,
        finished_at=dt.datetime(2025, 9, 30, 12, 0, tzinfo=dt.timezone.utc),
        scalegrid_version="0.1.0", git_commit="synthetic", hostname="test", device="cpu",
        config_json="{}",
    )
    row.update(values)
    return store.RunRow(**row)


def write_paper_grid(
    results: Path,
    *,
    law: PaperLaw = PaperLaw(),
    sizes=SIZES,
    budgets=BUDGETS,
    epochs=EPOCHS,
    weight_decays=WEIGHT_DECAYS,
    lrs=LRS,
    seeds=(0,),
    members=MEMBERS,
    distill: bool = True,
    downstream: bool = True,
    n_failed: int = 0,
    curves: int = 40,
    noise: float = 0.001,
    seed: int = 0,
    sweep: str = "paper",
    search: bool = False,
    signals: bool = False,
) -> Written:
    """Write the grid's runs (and a few learning curves) under `results`; with `search`, also each
    (size, budget)'s locally-optimal search over the written losses (the real walk, from a poor start)."""
    rng = np.random.default_rng(seed)
    out = Written(law=law)
    train_ids = []
    for n in sizes:
        for d in budgets:
            for k in epochs:
                for wd in weight_decays:
                    for lr in lrs:
                        for s in seeds:
                            tid = _tid(sweep, "train", n, d, k, wd, lr, s)
                            loss = law.loss(n, d, k, wd, lr) + rng.normal(0, noise)
                            tokens_seen = int(d * k)
                            extra = _signals_of(n, d, k, wd, lr, s) if signals else {}
                            write_run(results, base_row(
                                trial_id=tid, sweep=sweep, model=_model_name(n), params=int(n),
                                params_nonembed=int(0.85 * n), unique_tokens=int(d), epochs=k,
                                tokens_seen=tokens_seen, lr=lr, weight_decay=wd, seed=s,
                                val_loss=loss, best_val_loss=loss - 0.001, train_loss=loss - 0.02 * k,
                                flops=6.0 * n * tokens_seen, wall_s=tokens_seen / 2e6, **extra,
                            ))
                            train_ids.append((tid, loss, k, d, n, wd, lr))
    out.trial_ids += [t[0] for t in train_ids]

    for i in range(n_failed):  # failed trials: a row with its error and no loss
        tid = _tid(sweep, "failed", i)
        write_run(results, base_row(
            trial_id=tid, sweep=sweep, status="FAILED", model=_model_name(sizes[-1]),
            params=int(sizes[-1]), params_nonembed=int(0.85 * sizes[-1]), unique_tokens=int(budgets[-1]),
            epochs=32, tokens_seen=0, lr=lrs[0], weight_decay=weight_decays[0], seed=100 + i,
            val_loss=float("nan"), best_val_loss=float("nan"), train_loss=float("nan"),
            flops=float("nan"), wall_s=12.0, error="RuntimeError: CUDA out of memory",
        ))
        out.failed_ids.append(tid)

    stage_rows = []  # (trial_id, row) of the largest ensembles and the students: what is evaluated downstream
    for n in sizes:
        for d in budgets:
            for m in members:
                tid = _tid(sweep, "ensemble", n, d, m)
                loss = law.ensemble(n, d, m) + rng.normal(0, noise)
                row = base_row(
                    trial_id=tid, sweep=sweep, stage="ensemble", model=_model_name(n), params=int(n),
                    params_nonembed=int(0.85 * n), unique_tokens=int(d), epochs=law.epochs_opt(n),
                    tokens_seen=int(d * law.epochs_opt(n) * m), lr=law.lr_opt, weight_decay=law.wd_opt(n),
                    members=m, val_loss=loss, best_val_loss=loss, train_loss=float("nan"),
                    flops=0.0, wall_s=30.0 * m,
                )
                write_run(results, row)
                if m == max(members):
                    stage_rows.append((tid, row))
                out.trial_ids.append(tid)

    if distill and members:
        teacher_k = max(members)
        student = sizes[1] if len(sizes) > 1 else sizes[0]
        for d in budgets:
            single = law.best(student, d)
            teacher = law.ensemble(student, d, teacher_k)
            loss = single - law.retention * (single - teacher) + rng.normal(0, noise / 4)
            tid = _tid(sweep, "distill", student, d)
            row = base_row(
                trial_id=tid, sweep=sweep, stage="distill", model=_model_name(student),
                params=int(student), params_nonembed=int(0.85 * student), unique_tokens=int(d),
                epochs=law.epochs_opt(student), tokens_seen=int(d * law.epochs_opt(student)),
                lr=law.lr_opt, weight_decay=law.wd_opt(student), members=teacher_k, val_loss=loss,
                best_val_loss=loss, train_loss=float("nan"), flops=6.0 * student * d, wall_s=100.0,
                config_json=json.dumps({"teacher": {"model": _model_name(student), "members": teacher_k}}),
            )
            write_run(results, row)
            stage_rows.append((tid, row))
            out.trial_ids.append(tid)

    if downstream:  # each (size, budget)'s best single model, its largest ensemble, the students
        best = {}
        for tid, loss, k, d, n, wd, lr in train_ids:
            if (n, d) not in best or loss < best[(n, d)][1]:
                best[(n, d)] = (tid, loss, n, d, "train", 1)
        scored = list(best.values()) + [(t, r.val_loss, r.params, r.unique_tokens, r.stage, r.members) for t, r in stage_rows]
        write_downstream(results, scored, sweep)

    # learning curves: the best run of every (size, budget), and the 1- and 16-epoch runs of the
    # smallest size at the smallest budget with otherwise optimal settings (under- and over-trained)
    if curves:
        best_of = {}
        for tid, loss, k, d, n, wd, lr in train_ids:
            key = (n, d)
            if key not in best_of or loss < best_of[key][1]:
                best_of[key] = (tid, loss, k, d)
        picks = list(best_of.values())
        n0, d0 = min(sizes), min(budgets)
        for tid, loss, k, d, n, wd, lr in train_ids:
            if (n, d) == (n0, d0) and k in (min(epochs), max(epochs)) and wd == law.wd_opt(n0) and lr == law.lr_opt:
                picks.append((tid, loss, k, d))
        for tid, final, k, d in picks[-curves:] if curves < len(picks) else picks:
            steps = np.arange(0, 101) * 20
            frac = np.clip(steps / steps[-1], 1e-3, None)
            over = max(k / 8 - 1, 0)  # beyond the useful epochs the validation loss turns up at the end
            val = final + 0.9 * (frac ** -0.35 - 1) + 0.05 * over * (frac - 1) ** 2 * (frac > 0.5)
            train = val - 0.03 * k * frac
            rows = [
                {"step": int(s), "epoch": float(f * k), "tokens_seen": int(f * k * d), "train_loss": float(t),
                 "val_loss": float(v), "lr": 3e-3, "wall_s": float(f * 100)}
                for s, f, v, t in zip(steps, frac, val, train)
            ]
            write_curves(results, tid, rows + (_epoch_ends(k, d, final) if signals else []))
            out.curve_ids.append(tid)
    if search:
        losses = {(n, d, k, wd, lr): (tid, loss) for tid, loss, k, d, n, wd, lr in train_ids}
        write_paper_search(results, losses, {"epochs": epochs, "weight_decay": weight_decays, "lr": lrs}, sweep)
    if signals:
        out.trial_ids += write_adaptive_runs(results, law, sizes, min(budgets), max(epochs), sweep)
    out.n_rows = len(out.trial_ids) + len(out.failed_ids)
    return out


def write_downstream(results: Path, scored: list[tuple], sweep: str) -> None:
    """evals/ rows of one task, for (trial_id, loss, params, unique_tokens, stage, members): an
    accuracy that falls with the loss (the ordering by loss holds by construction), stderr 0.005."""
    losses = [loss for _, loss, *_ in scored]
    top, spread = max(losses), max(losses) - min(losses)
    for tid, loss, n, d, stage, k in scored:
        accuracy = 0.3 + 0.5 * (top - loss) / spread
        store.write_eval(layout(results), [store.EvalRow(
            eval_id=_tid(sweep, "eval", tid), sweep=sweep, model_id=tid, stage=stage, status="COMPLETED",
            model=_model_name(n), params=int(n), unique_tokens=int(d), epochs=8, members=int(k), combine=None, task="facts",
            task_version="1", num_fewshot=0, limit=None, metric="acc", value=accuracy, stderr=0.005, samples=10_000,
            truncated=0, max_length=4096, harness_version="0.4.13", device="cpu", wall_s=1.0, error=None,
            finished_at=dt.datetime(2025, 9, 30, 12, 0, tzinfo=dt.timezone.utc), scalegrid_version="0.1.0",
            git_commit="synthetic", hostname="test",
        )])


ADAPTIVE = (  # rule, patience, epochs stopped after, loss over the best fixed run's
    ("val_curve", 1, 6, 1.004),
    ("grad_stats", 0, 11, 1.02),
)


def _signals_of(n: float, d: float, k: int, wd: float, lr: float, seed: int) -> dict:
    """A train run's identity and memorisation: memorised_train grows with epochs, memorised_val does not."""
    config = {"model": _model_name(n), "unique_tokens": int(d), "epochs": k, "weight_decay": wd, "lr": lr, "seed": seed,
              "train": {"schedule": "wsd"}}
    return {"config_json": json.dumps(config, sort_keys=True), "memorised_train": 0.1 + 0.05 * math.log2(k),
            "memorised_val": 0.08}


def _epoch_ends(epochs: int, tokens: float, final: float) -> list[dict]:
    """The epoch-end rows of `train.diagnostics`: v_e falling, c_e rising, the SNR falling with epochs."""
    return [
        {"step": 1000 + e, "epoch": float(e), "tokens_seen": int(e * tokens), "train_loss": final, "val_loss": final + 0.1 / e,
         "lr": 3e-3, "wall_s": float(e), "grad_norm": 1.0 / e, "grad_cosine": math.nan if e == 1 else 1 - 0.5 / e,
         "grad_snr": 4.0 / e, "grad_gram_top": [2.0 / e, 1.0 / e, 0.5 / e],
         "val_curvature": math.nan if e < 3 else 0.1 * (1 / e - 2 / (e - 1) + 1 / (e - 2))}
        for e in range(1, epochs + 1)
    ]


def write_adaptive_runs(results: Path, law: PaperLaw, sizes, budget: float, max_epochs: int, sweep: str) -> list[str]:
    """Adaptive runs (`epochs: {max, stop}`) at each size's optimum at one budget, each a known
    share of the fixed optimum's loss and a known stop: their rows and trial ids."""
    ids = []
    for n in sizes:
        wd, lr = law.wd_opt(n), law.lr_opt
        for rule, patience, stopped, ratio in ADAPTIVE:
            config = json.loads(_signals_of(n, budget, max_epochs, wd, lr, 0)["config_json"])
            config["train"]["stop"] = {"rule": rule, "gamma": 0.02, **({"patience": patience} if patience else {})}
            tokens = int(round(stopped / 0.8) * budget)
            loss = law.loss(n, budget, law.epochs_opt(n), wd, lr) * ratio
            tid = _tid(sweep, "adaptive", n, rule)
            write_run(results, base_row(
                trial_id=tid, sweep=sweep, model=_model_name(n), params=int(n), params_nonembed=int(0.85 * n),
                unique_tokens=int(budget), epochs=max_epochs, tokens_seen=tokens, lr=lr, weight_decay=wd,
                val_loss=loss, best_val_loss=loss, train_loss=loss - 0.1, flops=6.0 * n * tokens, wall_s=tokens / 2e6,
                stopped_epoch=stopped, config_json=json.dumps(config, sort_keys=True),
            ))
            ids.append(tid)
    return ids


def write_paper_search(results: Path, losses: dict, ladders: dict, sweep: str) -> None:
    """Each (size, budget)'s walk (`analysis.walk.local_search`) over the grid's losses, from its
    ladders' low ends, written as `search/` rows."""
    from scalegrid.analysis.walk import CERTIFIED, local_search

    ladders = {a: tuple(v) for a, v in ladders.items() if len(v) > 1}
    sizes_budgets = sorted({(n, d) for n, d, *_ in losses})
    for n, d in sizes_budgets:
        def at(p, n=n, d=d):
            return losses[(n, d, p.get("epochs"), p.get("weight_decay"), p.get("lr"))]

        path = local_search(ladders, {a: v[0] for a, v in ladders.items()}, lambda p: at(p)[1],
                            cost=lambda p: p["epochs"])
        rows = []
        for i, step in enumerate(path.steps):
            points = [step.neighbour_point(nb) for nb in step.neighbours]
            rows.append(store.SearchRow(
                cell_id=_tid(sweep, "cell", n, d), sweep=sweep, cell=f"model={_model_name(n)}, unique_tokens={int(d)}",
                model=_model_name(n), params=int(n), unique_tokens=int(d), seed=0, step=i, outcome=step.outcome,
                centre=", ".join(f"{a}={v:g}" for a, v in step.centre.items()), centre_trial_id=at(step.centre)[0],
                epochs=step.centre["epochs"], lr=step.centre["lr"], weight_decay=step.centre["weight_decay"], loss=step.loss,
                seed_losses=list(step.seeds), noise=step.noise, neighbourhood=step.neighbourhood,
                neighbours=[f"{nb.label} (edge)" if p is None else ", ".join(f"{a}={v:g}" for a, v in zip(nb.axes, nb.values))
                            for nb, p in zip(step.neighbours, points)],
                neighbour_trial_ids=["" if p is None else at(p)[0] for p in points],
                neighbour_losses=[nb.loss for nb in step.neighbours], neighbour_status=[nb.status for nb in step.neighbours],
                moved_to=None if step.moved_to is None else str(step.moved_to),
                moved_to_trial_id=None if step.moved_to is None else at(step.moved_to)[0],
                certified=step.outcome == CERTIFIED, edge=bool(step.edge), edge_axes=list(step.edge),
                ladders_json=json.dumps({a: list(v) for a, v in step.ladders.items()}),
                finished_at=dt.datetime(2025, 9, 30, 12, 0, tzinfo=dt.timezone.utc),
            ))
        store.write_search(layout(results), rows[0].cell_id, rows)


@dataclass(frozen=True)
class ReuseLaw:
    A: float = 40.0
    B: float = 0.5
    C: float = 0.1
    r_scale: float = 20.0  # R*(N) = r_scale log N: larger datasets can be repeated more

    def r_star(self, samples: float) -> float:
        return self.r_scale * math.log(samples)

    def effective(self, samples: float, epochs: float) -> float:
        r = self.r_star(samples)
        return samples * (1 + r * (1 - math.exp(-(epochs - 1) / r)))

    def loss(self, samples: float, epochs: float) -> float:
        return self.A / self.effective(samples, epochs) ** self.B + self.C


def write_reuse_grid(
    results: Path,
    *,
    law: ReuseLaw = ReuseLaw(),
    samples=(256, 512, 1024, 2048, 4096, 8192, 16384),
    epochs=(1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 18, 20, 24, 28, 32, 40, 48, 64),
    noise: float = 0.0005,
    seed: int = 0,
) -> int:
    """The linear-regression testbed: loss over (samples, epochs); returns the number of rows."""
    rng = np.random.default_rng(seed)
    count = 0
    for n in samples:
        for k in epochs:
            loss = law.loss(n, k) * (1 + rng.normal(0, noise))
            write_run(results, base_row(
                trial_id=_tid("reuse", n, k), sweep="reuse", trainer="linreg", model="linreg-64",
                params=64, params_nonembed=64, unique_tokens=n, epochs=k, tokens_seen=n * k, lr=0.05,
                weight_decay=0.0, val_loss=loss, best_val_loss=loss, train_loss=loss * 0.9,
                flops=6.0 * 64 * n * k, wall_s=0.01,
            ))
            count += 1
    return count
