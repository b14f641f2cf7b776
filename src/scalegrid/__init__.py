"""scalegrid: data-constrained pre-training sweeps on Ray Tune, results in Parquet, scaling laws."""

__version__ = "0.1.0"


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


__all__ = ["load_runs", "load_ensembles", "load_curves", "__version__"]
