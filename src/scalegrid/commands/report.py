"""`scalegrid report RESULTS [-o DIR]`: the scaling report of a results directory.

Writes DIR/index.html (self-contained, opens offline), DIR/report.md, DIR/figures/*.png|svg and
DIR/fits.json (default DIR: RESULTS/report) and prints where index.html is. Missing or partial
results give a partial report whose skipped sections say why; only a RESULTS path that is not a
readable directory is an error.
"""

from __future__ import annotations

from pathlib import Path

from scalegrid.commands.args import non_negative_int


def register(subparsers) -> None:
    sub = subparsers.add_parser(
        "report", help="write the scaling report (HTML, Markdown, figures, fits.json) of a results directory",
        description=__doc__.splitlines()[0],
    )
    sub.add_argument("results", type=Path, help="a results directory, e.g. results/quickstart")
    sub.add_argument("-o", "--out", type=Path, help="where to write the report (default: RESULTS/report)")
    sub.add_argument("--bootstrap", type=non_negative_int, default=1000,
                     help="bootstrap resamples per fit for the 95%% intervals (default: 1000; 0: none)")
    sub.add_argument("--workers", type=non_negative_int, default=None,
                     help="other processes fitting the slow laws while the report draws "
                          "(default: one per CPU beyond the first, at most 8; 0: none)")
    sub.set_defaults(func=run)


def run(args) -> int:
    from scalegrid.report import write_report  # matplotlib loads only when a report is made

    index = write_report(args.results, args.out, bootstrap=args.bootstrap, workers=args.workers)
    print(index)
    return 0
