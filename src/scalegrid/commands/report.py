"""`scalegrid report RESULTS [-o DIR]`: the scaling report of a results directory.

Writes DIR/index.html (self-contained, opens offline), DIR/report.md, DIR/figures/*.png|svg and
DIR/fits.json (default DIR: RESULTS/report) and prints where index.html is. Missing or partial
results give a partial report whose skipped sections say why; only a RESULTS path that is not a
readable directory is an error.
"""

from __future__ import annotations

from pathlib import Path

from scalegrid import store
from scalegrid.commands.args import non_negative_int
from scalegrid.report import report_of
from scalegrid.storage import layout


def register(subparsers) -> None:
    sub = subparsers.add_parser(
        "report", help="write the scaling report (HTML, Markdown, figures, fits.json) of a results directory",
        description=__doc__.splitlines()[0],
    )
    sub.add_argument("results", help="a results directory or URI, e.g. results/quickstart or s3://bucket/quickstart")
    sub.add_argument("-o", "--out", type=Path, help="where to write the report (default: RESULTS/report)")
    sub.add_argument("--bootstrap", type=non_negative_int, default=1000,
                     help="bootstrap resamples per fit for the 95%% intervals (default: 1000; 0: none)")
    sub.add_argument("--workers", type=non_negative_int, default=None,
                     help="other processes fitting the slow laws while the report draws "
                          "(default: one per CPU beyond the first, at most 8; 0: none)")
    sub.set_defaults(func=run)


def run(args) -> int:
    root = layout(args.results)
    snapshot = None
    if root.local_path is not None and root.local_path.is_dir():
        snapshot = store.read(root)
        if len(snapshot.all_runs):  # else the one error line names them
            snapshot.warn()  # every unreadable run file on stderr; the report lists them too
    print(report_of(args.results, args.out, bootstrap=args.bootstrap, workers=args.workers, snapshot=snapshot))
    return 0
