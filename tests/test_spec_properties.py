"""The promise about bad input, as a property over the spec's own schema.

Mutations are derived from `SweepSpec.model_json_schema()` (and the model shapes' schemas), so a
field added to the spec is mutated here without a line of this file changing: wrong types, values
past each declared range, unknown keys at every level, missing required fields, and the
cross-field contradictions the validators exist for. For every generated spec (one to three
mutations of a valid lm or linreg spec):

    scalegrid plan SPEC   exit 0 or 2; when 2, exactly one line on stderr; never a traceback;
                          the populated results directory byte-identical (plan never writes)
    scalegrid run SPEC    the same for a sample of what plan refused, and for what only run can
                          judge (resources no node holds, budgets larger than the corpus)

A second property holds the schema itself: every number the spec takes has both ends of a range.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import io
from collections.abc import Callable
from typing import NamedTuple

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from sweep_fixtures import LINREG, TINY_LM, tree_digest
from scalegrid.cli import main
from scalegrid.shapes import LinregShape, LlamaShape
from scalegrid.spec import SweepSpec

CASES = 500  # generated `plan` cases; about 1 minute on 2 loaded cores
RUN_CASES = 12  # of them, through `run` on a real local Ray

SCHEMA = SweepSpec.model_json_schema()
SHAPE_SCHEMAS = {"llama": TypeAdapter(LlamaShape).json_schema(), "linreg": TypeAdapter(LinregShape).json_schema()}
VALID_SHAPES = {"llama": {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 96}, "linreg": {"dims": 64}}

LM = {
    **TINY_LM,
    "epochs": [1, 2],
    "seed": [0, 1],
    "include": [{"epochs": 3, "seed": 0}],
    "exclude": [{"epochs": 2, "seed": 1}],
    "ensemble": {"members": [1, 2], "where": [{"epochs": 1, "seed": 0}]},
    "distill": [{"teacher": {"epochs": 1, "seed": 0, "members": 2}, "student": {}, "method": "token"}],
}
BASES = {"lm": LM, "linreg": LINREG}

# What the validators exist for, beyond one field's type and range (spec.py, grid.py, graph.py).
CONTRADICTIONS = [
    {"trainer": "linreg"},  # an lm model and corpus
    {"model": {"dims": 8}},  # a linreg shape for the lm trainer
    {"data": {"source": "gaussian", "unique_tokens": 4096}},
    {"data": {"source": "files", "unique_tokens": 4096}},
    {"data": {"source": "hub", "unique_tokens": 4096}},
    {"data": {"tokenizer": {"kind": "hf"}, "unique_tokens": 4096}},
    {"data": {"tokenizer": {"kind": "byte", "vocab_size": 512}, "unique_tokens": 4096}},
    {"data": {"tokenizer": {"kind": "bpe", "path": "./tok"}, "unique_tokens": 4096}},
    {"data": {"source": "gaussian", "tokenizer": "bpe", "unique_tokens": 128}},
    {"data": {**TINY_LM["data"], "unique_tokens": 4100}},  # not whole sequences
    {"train": {"seq_len": 8192}},  # longer than the budget
    {"model": {"hidden_size": 30, "num_layers": 1, "num_heads": 4, "intermediate_size": 8}},
    {"model": {"hidden_size": 32, "num_layers": 1, "num_heads": 4, "num_kv_heads": 3, "intermediate_size": 8}},
    {"exclude": [{"epochs": 7}]},
    {"include": [{"epoch": 2}]},
    {"ensemble": {"members": [2], "where": [{"lr": 0.5}]}},
    {"distill": [{"teacher": {"epochs": 9, "members": 2}}]},
    {"distill": [{"teacher": {"members": 2}}]},  # two grid points match
    {"distill": [{"teacher": {"epochs": 1, "seed": 0, "members": 2}, "student": {"epochs": [1, 2]}}]},
    {"distill": [{"teacher": {"epochs": 1, "seed": 0, "members": 2}, "student": {"epochs": 0}}]},
    {"distill": [{"teacher": {"epochs": 1, "seed": 0, "members": 2}, "method": "sequence", "synthetic_weight": 1}]},
    {"trainer": "linreg", "model": {"dims": 8}, "data": {"source": "gaussian", "unique_tokens": 128}},  # with ensemble:
    {"results": "/"},  # results paths (issue 25): the root, an empty path
    {"results": ""},
    {"seed": list(range(1000)), "lr": [i / 1000 for i in range(1, 401)]},  # a grid over the cap, refused unexpanded
    {"exclude": [{"seed": 0}, {"seed": 1}, {"epochs": 1}, {"epochs": 2}, {"epochs": 3}]},  # every point excluded
]

# Mutations of the YAML text that no dict can carry (issue 25): a key given twice, alias bombs.
TEXT_MUTATIONS = [
    ("a key given twice", lambda text: text + text.splitlines()[0] + "\n"),
    ("an alias bomb", lambda text: text + "bombs:\n  a: &a [1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"  {c}: &{c} [{', '.join([f'*{p}'] * 8)}]\n" for p, c in zip("abcdefg", "bcdefgh")) + "exclude: [{seed: *h}]\n"),
    ("aliases within bounds", lambda text: text + "extra: &x [1, 2]\ninclude: [{seed: *x}]\n"),
]

# Only `run` can judge these (the cluster, the tokenized corpus); plan accepts them.
RUN_ONLY = [
    {"resources": {"cpus": 1000}},
    {"resources": {"cpus": 1, "gpus": 8}},
    {"data": {**TINY_LM["data"], "unique_tokens": 2**22}},  # larger than the corpus
]


# --- reading the schema ---------------------------------------------------------------------------


def resolved(node: dict, schema: dict = SCHEMA) -> dict:
    while "$ref" in node or "anyOf" in node:
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
        else:
            node = next((n for n in node["anyOf"] if n.get("type") != "null"), node["anyOf"][0])
    return node


def fields(node: dict, path: tuple = (), schema: dict = SCHEMA) -> list[tuple[tuple, dict]]:
    """(path, schema node) of every field, objects included; an array's items as path + (0,)."""
    node = resolved(node, schema)
    found = [(path, node)] if path else []
    for name, sub in node.get("properties", {}).items():
        found += fields(sub, (*path, name), schema)
    if path and node.get("type") == "array" and resolved(node.get("items", {}), schema).get("type") in ("integer", "number", "string"):
        found.append(((*path, 0), resolved(node["items"], schema)))
    return found


FIELDS = fields(SCHEMA)
OBJECTS = [(path, node) for path, node in FIELDS if node.get("properties")] + [((), SCHEMA)]


def bounds(node: dict) -> tuple[float | None, float | None]:
    low = node.get("minimum", node.get("exclusiveMinimum"))
    high = node.get("maximum", node.get("exclusiveMaximum"))
    return low, high


# --- values for one field ---------------------------------------------------------------------------

WRONG = {
    "integer": [True, False, 2.0, 1.5, "7", "1e3", None, [[1]], {"a": 1}],
    "number": [True, "fast", "1e-3x", ".nan", "inf", None, [[1.0]], {"a": 1}],
    "string": [12, 1.5, True, [["x"]], {"a": 1}],
    "boolean": ["maybe", 2, "yes"],
    "object": ["x", 5, [1]],
    "array": [{"a": 1}, [], [[]]],
}


def values_for(node: dict) -> st.SearchStrategy:
    """Wrong types, values past (and at) each end of the declared range, other strings and choices."""
    kind = node.get("type")
    options = [st.sampled_from(WRONG.get(kind, [None, "x"]))]
    low, high = bounds(node)
    if kind == "integer":
        if low is not None:
            options += [st.integers(-(10**40), int(low) - 1), st.just(int(low))]
        if high is not None:
            options += [st.integers(int(high) + 1, 10**40), st.just(int(high))]
    if kind == "number":
        finite = st.floats(allow_nan=False, allow_infinity=False)
        if low is not None:
            options += [finite.filter(lambda v: v < low), st.just(low)]
        if high is not None:
            options += [finite.filter(lambda v: v > high), st.just(high)]
        options.append(st.sampled_from([float("inf"), float("-inf"), float("nan")]))
    if kind == "string":
        options.append(st.text(max_size=120))
    if "enum" in node:
        options.append(st.text(max_size=12).filter(lambda v: v not in node["enum"]))
    return st.one_of(options)


# --- mutations ---------------------------------------------------------------------------------------


class Mutation(NamedTuple):
    apply: Callable[[dict], None]
    what: str

    def __repr__(self) -> str:  # hypothesis shows a failing case by what it changed
        return self.what


def parent_of(spec: dict, path: tuple) -> dict:
    """The mapping holding the field at `path`, made (or replaced by a mapping) on the way."""
    for key in path[:-1]:
        if not isinstance(spec.get(key), dict):
            spec[key] = {}
        spec = spec[key]
    return spec


def mutate(spec: dict, path: tuple, value) -> None:
    if path[-1] == 0:  # one bad item in a list field
        parent_of(spec, path[:-1])[path[-2]] = [value]
    else:
        parent_of(spec, path)[path[-1]] = value


@st.composite
def field_value(draw):
    path, node = draw(st.sampled_from(FIELDS))
    value = draw(values_for(node))
    return Mutation(lambda spec: mutate(spec, path, value), f"{'.'.join(map(str, path))} = {value!r}")


@st.composite
def unknown_key(draw):
    path, _ = draw(st.sampled_from(OBJECTS))
    key = draw(st.sampled_from(["bogus", "epoch", "learning_rate", "tokenzier", "cpu"]))
    return Mutation(lambda spec: mutate(spec, (*path, key), 1), f"unknown {'.'.join((*map(str, path), key))}")


@st.composite
def missing_field(draw):
    path, node = draw(st.sampled_from([o for o in OBJECTS if resolved(o[1]).get("required")]))
    name = draw(st.sampled_from(resolved(node)["required"]))

    def drop(spec):
        parent = spec
        for key in path:
            parent = parent.get(key) if isinstance(parent.get(key), dict) else {}
        parent.pop(name, None)

    return Mutation(drop, f"missing {'.'.join((*map(str, path), name))}")


@st.composite
def shape_value(draw):
    kind = draw(st.sampled_from(sorted(SHAPE_SCHEMAS)))
    schema = SHAPE_SCHEMAS[kind]
    name, node = draw(st.sampled_from(sorted(schema["properties"].items())))
    sizes = dict(VALID_SHAPES[kind])
    how = draw(st.sampled_from(["value", "missing", "unknown"]))
    if how == "value":
        sizes[name] = draw(values_for(resolved(node, schema)))
    elif how == "missing":
        sizes.pop(name, None)
    else:
        sizes["hiden_size"] = 64
    return Mutation(lambda spec: spec.update(model=[sizes]), f"model = [{sizes!r}]")


@st.composite
def contradiction(draw):
    change = draw(st.sampled_from(CONTRADICTIONS))
    return Mutation(lambda spec: spec.update(copy.deepcopy(change)), f"contradiction {change!r}")


MUTATION = st.one_of(field_value(), field_value(), unknown_key(), missing_field(), shape_value(), contradiction())


# --- running a command ---------------------------------------------------------------------------------


def command(*argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, err.getvalue()


def assert_promise(code: int, err: str, context: str) -> None:
    assert "Traceback" not in err, f"{context}\n{err}"
    assert code in (0, 2), f"{context}: exit {code}\n{err}"
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("scalegrid: error: "), f"{context}\n{err}"


@pytest.fixture(scope="module")
def populated(ray_local, tmp_path_factory):
    """A results directory that a real run filled: runs, curves, leases, token-free linreg cache, Tune."""
    root = tmp_path_factory.mktemp("populated")
    spec = root / "lin.yaml"
    spec.write_text(yaml.safe_dump({**LINREG, "results": str(root / "results")}))
    assert command("run", str(spec), "--no-report")[0] == 0
    return root / "results"


def write(directory, spec: dict, n: int, text_mutation=None):
    path = directory / f"case-{n}.yaml"
    text = yaml.safe_dump(spec, sort_keys=False)
    path.write_text(text_mutation[1](text) if text_mutation else text)
    return path


def test_any_spec_mutation_keeps_the_promise(populated, tmp_path_factory):
    directory = tmp_path_factory.mktemp("cases")
    before = tree_digest(populated)
    outcomes: collections.Counter = collections.Counter()
    refused: list[dict] = []

    @settings(max_examples=CASES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(base=st.sampled_from(sorted(BASES)), mutations=st.lists(MUTATION, min_size=1, max_size=3),
           text=st.one_of(st.none(), st.none(), st.none(), st.sampled_from(TEXT_MUTATIONS)))
    def plan_keeps_the_promise(base, mutations, text):
        spec = {**copy.deepcopy(BASES[base]), "results": str(populated)}
        for apply, _ in mutations:
            apply(spec)
        context = f"{base}: {'; '.join(what for _, what in mutations)}" + (f"; {text[0]}" if text else "")
        code, err = command("plan", str(write(directory, spec, sum(outcomes.values()), text)))
        assert_promise(code, err, context)
        assert tree_digest(populated) == before, context
        outcomes[code] += 1
        if code == 2 and len(refused) < RUN_CASES - len(RUN_ONLY):
            refused.append(spec)

    plan_keeps_the_promise()
    print(f"plan: {sum(outcomes.values())} generated cases, {outcomes[0]} exit 0, {outcomes[2]} exit 2")
    assert sum(outcomes.values()) >= CASES and outcomes[0] and outcomes[2]

    for n, spec in enumerate(refused + [{**copy.deepcopy(TINY_LM), **change, "results": str(populated)} for change in RUN_ONLY]):
        code, err = command("run", str(write(directory, spec, 10_000 + n)))
        assert_promise(code, err, f"run {spec}")
        assert code == 2 and tree_digest(populated) == before, f"run {spec}\n{err}"
    print(f"run: {len(refused) + len(RUN_ONLY)} cases, all exit 2 with one line, results untouched")


def test_every_number_in_the_spec_has_a_range():
    """Strict types and bounds by declaration: a field added without a range fails here."""
    unbounded = [
        ".".join(map(str, path))
        for schema in (SCHEMA, *SHAPE_SCHEMAS.values())
        for path, node in fields(schema, schema=schema)
        if node.get("type") in ("integer", "number") and None in bounds(node)
    ]
    assert not unbounded, f"give these a range (Field(ge=..., le=...)): {unbounded}"
