"""The report's sections: each calls the analysis library's recipes and draws what they return.

Nothing is fitted here. Every number a section shows comes from a function of
`scalegrid.analysis` (imported by name in the section's module), or is a measured loss read from
the store; the sections choose rows, draw and format. A section whose inputs are absent is skipped
with a one-line reason; a part of a section that cannot be made (e.g. the joint asymptote without
enough sizes) becomes a note, and the rest stays.

    section            module              analysis functions
    1 summary          summary.py          (counts and sums of the store; headlines lifted from the other sections)
    2 params           params.py           best_runs, param_scaling, power_law
    3 epochs           epochs.py           best_runs, optimal_hparam_scaling(hparam="epochs")
    3b epoch_signals   epoch_signals.py    epoch_diagnostics, memorisation_by_epochs, adaptive_against_fixed
    4 hyperparameters  hyperparameters.py  best_runs, local_optimality, local_optimality_neighbours,
                                           optimal_hparam_scaling(hparam="weight_decay"), power_law
    4b search          search.py           search_outcomes, search_points (RESULTS/search/),
                                           optimal_hparam_scaling over the certified cells, power_law
    5 ensembles        ensembles.py        ensemble_scaling, joint_scaling, param_scaling, power_law
    6 data             data.py             param_scaling, joint_scaling, best_runs(stage="distill"),
                                           data_scaling, data_efficiency, power_law
    7 distillation     distillation.py     distillation
    8 reuse            reuse.py            epoch_rows, one_pass_reference, reuse_analysis
    9 curves           curves.py           (none: the store's curves of trials chosen from the runs)
    10 downstream      downstream.py       downstream_table, loss_ordering (RESULTS/evals/)

Each section module is made of three parts, and its entry function (`section_<key>(ctx, s)`,
which `build.py` calls) only runs them in turn:

    <key>_numbers(ctx)                     computes: calls the analysis functions and returns a
                                           frozen dataclass of the numbers and tables it shows
                                           (raises NoRows when the section cannot be made)
    draw_<key>(ctx, s, numbers)            draws: saves its figures (report/figures.py) into the
                                           section; returns notes on what a figure leaves out
    write_<key>(ctx, s, numbers, notes)    writes: fits.json entries, notes, tables, prose, headline

Nothing is fitted in drawing or writing: a drawing evaluates a fitted law (`power_law`) on a grid
of x values at most. A part of a section that cannot be made (`part`) becomes a note where it
happens: in computing, or in drawing for a figure that fails.

`common.py` holds what the sections share (`Context`, `NoRows`, `part`, labels, small table and
figure helpers); `shared_fits.py` the analysis results several sections show, computed once per
report (and the ensemble laws, sent to worker processes first: `start_ensemble_fits`).
"""

from scalegrid.report.sections.common import Context, NoRows, warn
from scalegrid.report.sections.curves import section_curves
from scalegrid.report.sections.data import section_data
from scalegrid.report.sections.distillation import section_distillation
from scalegrid.report.sections.downstream import section_downstream
from scalegrid.report.sections.ensembles import section_ensembles
from scalegrid.report.sections.epoch_signals import section_epoch_signals
from scalegrid.report.sections.epochs import section_epochs
from scalegrid.report.sections.hyperparameters import section_hyperparameters
from scalegrid.report.sections.params import section_params
from scalegrid.report.sections.reuse import section_reuse
from scalegrid.report.sections.search import section_search
from scalegrid.report.sections.shared_fits import start_ensemble_fits
from scalegrid.report.sections.summary import section_summary

__all__ = [
    "Context",
    "NoRows",
    "section_curves",
    "section_data",
    "section_distillation",
    "section_downstream",
    "section_ensembles",
    "section_epoch_signals",
    "section_epochs",
    "section_hyperparameters",
    "section_params",
    "section_reuse",
    "section_search",
    "section_summary",
    "start_ensemble_fits",
    "warn",
]
