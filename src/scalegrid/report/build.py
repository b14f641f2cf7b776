"""`write_report`: results directory -> index.html, report.md, figures/*.png|svg, fits.json.

    inputs.load_inputs   read runs and curves through the store (unreadable files are noted)
    sections/            one module per section; each calls scalegrid.analysis and draws
    render.write_all     the same Document as HTML, Markdown and JSON

Missing or partial inputs never raise: a section that cannot be made is skipped with its reason,
and the report says it is partial. Only a results path that is not a readable directory is a
`UserError`.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

from scalegrid.analysis.least_squares import FitInputError
from scalegrid.errors import UserError
from scalegrid.storage import ResultsLayout, check_readable, layout, materialised
from scalegrid.version import __version__
from scalegrid.report import figures as F
from scalegrid.report.document import Document, Section
from scalegrid.report.inputs import load_inputs
from scalegrid.report.parallel import Workers, default_workers
from scalegrid.report.render import write_all
from scalegrid.report.sections import (
    Context,
    NoRows,
    warn,
    section_curves,
    section_data,
    section_distillation,
    section_downstream,
    section_ensembles,
    section_epoch_signals,
    section_epochs,
    section_hyperparameters,
    section_params,
    section_reuse,
    section_search,
    section_summary,
    start_ensemble_fits,
)

SECTIONS = (
    ("params", "Loss against parameters per token budget", section_params),
    ("epochs", "Loss against epochs: where repetition stops helping", section_epochs),
    ("epoch_signals", "Epochs decided while training: gradients, memorisation, adaptive stops", section_epoch_signals),
    ("hyperparameters", "Weight decay and learning rate", section_hyperparameters),
    ("search", "Locally-optimal hyper-parameters, searched", section_search),
    ("ensembles", "Ensembles", section_ensembles),
    ("data", "Data scaling and data efficiency", section_data),
    ("distillation", "Distillation", section_distillation),
    ("reuse", "Multi-epoch reuse", section_reuse),
    ("curves", "Learning curves", section_curves),
    ("downstream", "Downstream accuracy", section_downstream),
)


def write_report(
    results_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    workers: int | None = None,
    snapshot=None,
) -> Path:
    """Write the report of `results_dir` into `out_dir` (default RESULTS/report); returns index.html.

    `bootstrap` resamples give every fitted number its 95% interval (0: no intervals, faster).
    `workers` other processes fit the ensemble laws while this one draws (default: one per CPU
    beyond the first, at most 8; 0: everything in this process). The numbers do not depend on it.
    """
    started = time.perf_counter()
    inputs = load_inputs(results_dir, snapshot)  # a `store.Snapshot` the caller read already, if any
    out = Path(out_dir) if out_dir is not None else Path(results_dir) / "report"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{out}: cannot create the report directory ({err.strerror or err}); choose another with -o") from None
    _clear_old_figures(out)
    pool = Workers(workers if workers is not None else default_workers())
    ctx = Context(inputs=inputs, out_dir=out, bootstrap=bootstrap, seed=seed, workers=pool)
    try:
        if pool.workers:
            start_ensemble_fits(ctx)
        built = [_build(key, title, fn, ctx) for key, title, fn in SECTIONS]
    finally:
        pool.close()
    summary = Section("summary", "Summary")
    try:
        section_summary(ctx, summary, built)
    except Exception as err:  # noqa: BLE001 - the summary is counts; never lose the report over it
        warn("summary failed", err)
        summary.skip(f"could not be made ({err.__class__.__name__}: {err})")
    summary.fits["report_seconds"] = round(time.perf_counter() - started, 3)
    doc = Document(
        title=f"Scaling report: {_title_of(inputs)}",
        results_dir=str(Path(results_dir)),
        generated_at=dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        provenance=_provenance(inputs),
        partial_reasons=inputs.partial_reasons,
        sections=[summary, *built],
    )
    try:
        return write_all(doc, out)
    except OSError as err:
        raise UserError(f"{out}: cannot write the report ({err.strerror or err}); choose another directory with -o") from None


def _build(key: str, title: str, fn, ctx: Context) -> Section:
    section = Section(key, title)
    try:
        fn(ctx, section)
    except NoRows as err:  # with what the section found before it stopped
        section.fits.update(err.fits)
        section.notes.extend(err.notes)
        section.skip(str(err))
    except FitInputError as err:
        section.skip(str(err))
    except Exception as err:  # noqa: BLE001 - one broken section must not cost the others
        warn(f"section {key!r} failed", err)
        section.skip(f"could not be made ({err.__class__.__name__}: {err})")
    finally:
        F.close_all()
    if section.skipped:  # a skipped section shows nothing it half-made
        for figure in section.figures:
            figure.png.unlink(missing_ok=True)
            figure.svg.unlink(missing_ok=True)
        section.figures, section.tables, section.paragraphs, section.headline = [], [], [], []
    return section


FIGURE_NAMES = (
    "params_scaling", "epochs", "loss_vs_weight_decay", "loss_vs_lr", "optimal_hyperparameters", "ensembles",
    "joint_scaling", "data_scaling", "distillation", "reuse", "curves", "search_paths", "search_optimal_hyperparameters",
    "downstream", "epoch_diagnostics", "memorisation", "adaptive_epochs",
)


def _clear_old_figures(out: Path) -> None:
    """An earlier report's figures that this one may not redraw (a section now skipped); only
    the names a report writes, so a shared -o directory keeps everything else."""
    for name in FIGURE_NAMES:
        for suffix in (".png", ".svg"):
            (out / "figures" / f"{name}{suffix}").unlink(missing_ok=True)


def _title_of(inputs) -> str:
    runs = inputs.runs
    sweeps = sorted(runs["sweep"].dropna().unique()) if len(runs) else []
    return ", ".join(sweeps) if sweeps else inputs.results_dir.name


def _provenance(inputs) -> dict[str, str]:
    info = {"scalegrid": __version__}
    runs = inputs.runs
    if len(runs) and "git_commit" in runs:
        commits = sorted(runs["git_commit"].dropna().unique())
        if commits:
            info["runs' commits"] = ", ".join(commits[:3]) + (" …" if len(commits) > 3 else "")
    return info


def main(argv: list[str] | None = None) -> int:  # python -m scalegrid.report.build RESULTS [OUT]
    argv = sys.argv[1:] if argv is None else argv
    print(write_report(argv[0], argv[1] if len(argv) > 1 else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())


def report_of(results: str | Path | ResultsLayout, out: Path | None = None, **options) -> Path | str:
    """The report of a results directory or URI. On an object store the report is drawn from a
    local copy of the runs, curves and sweep records and uploaded to RESULTS/report (unless -o)."""
    root = layout(str(results) if isinstance(results, Path) else results)
    if root.local_path is not None:
        return write_report(root.local_path, out, **options)
    check_readable(root)
    with materialised(root, "runs", "ensembles", "curves", "sweeps", "evals") as local:
        index = write_report(local, out, **options)
        if out is not None:
            return index
        root.upload_tree(local / "report", root.report_dir())
    return root.shown(*root.report_dir(), "index.html")
