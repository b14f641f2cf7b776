"""scalegrid: data-constrained pre-training sweeps on Ray Tune, results in Parquet, scaling laws.

    import scalegrid
    scalegrid.plan("sweeps/quickstart.yaml")          # the trials and their status (no Ray)
    runs = scalegrid.run("sweeps/quickstart.yaml")    # train what is missing; the sweep's rows
    runs = scalegrid.load_runs("results/quickstart")  # read any results directory

Importing scalegrid is cheap: each function imports what it needs when called.
"""

from scalegrid.errors import UserError
from scalegrid.version import __version__


def plan(spec, results=None):
    """Every trial of a spec (a YAML path or a dict) with its axes, size, FLOPs and status, as a DataFrame; no Ray."""
    from scalegrid.api import plan as _plan

    return _plan(spec, results)


def run(spec, results=None, address=None, max_concurrent=None, *, report=False):
    """Run a sweep (a YAML path or a dict): train what is missing on Ray Tune, return its rows as a
    DataFrame. Raises `scalegrid.UserError` on bad input, before anything is written."""
    from scalegrid.api import run as _run

    return _run(spec, results, address, max_concurrent, report=report)


def load_runs(path):
    """All rows of a results directory as a pandas DataFrame: one per trial (train, distill) and per ensemble."""
    from scalegrid.store import load_runs as _load_runs

    return _load_runs(path)


def load_ensembles(path):
    """The ensemble rows of a results directory (one per grid point and member count k)."""
    from scalegrid.store import load_ensembles as _load_ensembles

    return _load_ensembles(path)


def load_curves(path):
    """All evaluation rows of a results directory as a pandas DataFrame (one row per eval)."""
    from scalegrid.store import load_curves as _load_curves

    return _load_curves(path)


__all__ = ["plan", "run", "load_runs", "load_ensembles", "load_curves", "UserError", "__version__"]
