"""Find the analysis library's functions by name, so a report section can say which one is missing.

Kept apart from the drawing code: the fitting workers (`parallel.py`) import this and
`scalegrid.analysis`, not matplotlib.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

ANALYSIS_MODULES = ("recipes", "reuse", "laws", "fitting", "tables", "chinchilla", "data_constrained")


class MissingAnalysis(Exception):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def analysis(name: str) -> Callable:
    """The public function `name` of scalegrid.analysis (package or one of its modules)."""
    try:
        package = importlib.import_module("scalegrid.analysis")
    except ImportError:
        raise MissingAnalysis(name) from None
    found = getattr(package, name, None)
    for module_name in ANALYSIS_MODULES:
        if found is not None:
            break
        try:
            module = importlib.import_module(f"scalegrid.analysis.{module_name}")
        except ImportError:
            continue
        found = getattr(module, name, None)
    if not callable(found):
        raise MissingAnalysis(name)
    return found


def fit_errors() -> tuple[type[Exception], ...]:
    """The analysis library's "this table cannot be fitted" error (its message names the fix)."""
    try:
        from scalegrid.analysis.fitting import FitInputError

        return (FitInputError,)
    except ImportError:
        return ()
