"""scalegrid: data-constrained pre-training sweeps on Ray Tune, results in Parquet, scaling laws.

    import scalegrid
    scalegrid.plan("sweeps/quickstart.yaml")          # the trials and their status (no Ray)
    runs = scalegrid.run("sweeps/quickstart.yaml")    # train what is missing; the sweep's rows
    runs = scalegrid.load_runs("results/quickstart")  # read any results directory

Importing scalegrid is cheap: each name below loads its module when first used (PEP 562).
"""

from __future__ import annotations

import importlib

from scalegrid.errors import UserError
from scalegrid.version import __version__

_EXPORTS = {
    "plan": "scalegrid.api",  # every trial of a spec (a YAML path or a dict), its axes, size, FLOPs, status; no Ray
    "run": "scalegrid.api",  # train what is missing on Ray Tune, return the sweep's rows (UserError on bad input, first)
    "load_runs": "scalegrid.store",  # one row per trial (train, distill) and per ensemble
    "load_ensembles": "scalegrid.store",  # the ensemble rows (one per grid point and member count k)
    "load_curves": "scalegrid.store",  # one row per evaluation
    "load_evals": "scalegrid.store",  # one row per downstream evaluation's metric (model, task, metric)
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'scalegrid' has no attribute {name!r}")


__all__ = [*_EXPORTS, "UserError", "__version__"]
