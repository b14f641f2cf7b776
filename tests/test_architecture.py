"""The shape of the code: layers point one way, no import cycle, small functions and modules,
and `plan`/`status` never pay for torch or Ray."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SRC = ROOT / "src" / "scalegrid"
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 600
# (path relative to src/scalegrid, function name or None for the module) -> why it may be larger.
# Empty: every function and module fits; add an entry only with its reason.
EXCEPTIONS: dict[tuple[str, str | None], str] = {}


def test_layers_contract_holds():
    """`[tool.importlinter]` in pyproject.toml: the layers, a pure analysis, a pure stage graph."""
    from importlinter.cli import lint_imports

    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True) == 0


def test_no_import_cycle_anywhere():
    """Function-level imports count too: a cycle hidden inside a function is still a cycle."""
    import grimp

    graph = grimp.build_graph("scalegrid")
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    cycles = [sorted(c) for c in _strongly_connected(edges) if len(c) > 1]
    assert not cycles, cycles


def _strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
    return components


def test_cycle_finder_finds_a_cycle():
    found = _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert {"a", "b", "c"} in found and {"d"} in found


def _sizes():
    for path in sorted(SRC.rglob("*.py")):
        rel = str(path.relative_to(SRC))
        text = path.read_text()
        yield rel, None, len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield rel, node.name, node.end_lineno - node.lineno + 1


def test_functions_and_modules_stay_small():
    too_big = [
        f"{rel}{':' + name if name else ''} has {lines} lines"
        for rel, name, lines in _sizes()
        if lines > (MAX_FUNCTION_LINES if name else MAX_MODULE_LINES) and (rel, name) not in EXCEPTIONS
    ]
    assert not too_big, too_big


def test_listed_exceptions_still_need_to_be():
    sizes = {(rel, name): lines for rel, name, lines in _sizes()}
    stale = [key for key in EXCEPTIONS if sizes.get(key, 0) <= (MAX_FUNCTION_LINES if key[1] else MAX_MODULE_LINES)]
    assert not stale, f"remove these from EXCEPTIONS: {stale}"


def test_no_scalegrid_import_hides_inside_a_function():
    """Every scalegrid dependency is at the top of its module, where import-linter and a reader see
    it; only external packages (Ray, torch, matplotlib) are imported where they are first needed."""
    hidden = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and (inner.level or (inner.module or "").startswith("scalegrid")):
                    hidden.append(f"{path.relative_to(SRC)}:{inner.lineno}")
                if isinstance(inner, ast.Import) and any(a.name.startswith("scalegrid") for a in inner.names):
                    hidden.append(f"{path.relative_to(SRC)}:{inner.lineno}")
    assert not hidden, hidden


def test_free_form_payloads_are_named_once():
    """`dict[str, Any]` only in payloads.py: everything else is typed (a Sweep, a Point, a
    TypedDict), and the three payloads that are free-form by nature carry their names."""
    loose = [f"{path.relative_to(SRC)}:{i}" for path in sorted(SRC.rglob("*.py")) if path.name != "payloads.py"
             for i, line in enumerate(path.read_text().splitlines(), 1) if "dict[str, Any]" in line]
    assert not loose, loose


@pytest.mark.parametrize("module", ["scalegrid.cli", "scalegrid.orchestrator.planning.sweep_plan", "scalegrid.store"])
def test_planning_never_imports_torch_or_ray(module):
    """`plan`, `status` and `fit` start in well under a second: torch and Ray load only where a trial runs."""
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'ray', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
