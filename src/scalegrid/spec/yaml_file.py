"""A spec file read as YAML, with the limits a hostile file meets before anything else sees it.

    raw = read_yaml("sweeps/quickstart.yaml")    # a mapping, or one UserError line naming the file

- at most MAX_SPEC_BYTES: a spec is a page of YAML, not a data file;
- a key given twice in one mapping is refused with both lines (YAML's own rule; PyYAML keeps the last);
- aliases are refused when they add more than MAX_VALUES values to the document (what it expands
  to beyond the nodes written out, which the 1 MiB bounds): a kilobyte of `&a [..]`,
  `&b [*a, *a, ..]` expands to billions, and validation walks every one.
  The check counts the composed node graph, alias by alias, with shared nodes counted each time
  they are used (as validation would), in time linear in the graph's own size.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from scalegrid.errors import UserError
from scalegrid.files import why_not_a_file
from scalegrid.payloads import YamlMapping

MAX_SPEC_BYTES = 1 << 20
MAX_VALUES = 100_000  # scalars, lists and mappings of the expanded document


def read_yaml(path: Path) -> YamlMapping | list | str | int | float | None:
    """The document in `path`, checked against the limits above; YAML's own errors in one line."""
    problem = why_not_a_file(path)
    if problem:
        what = "spec file not found" if problem == "not found" else f"the spec file is {problem}"
        raise UserError(f"{path}: {what}; pass the path of a sweep YAML such as sweeps/quickstart.yaml")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)
        if len(data) > MAX_SPEC_BYTES:
            raise UserError(f"{path}: the spec file is over {MAX_SPEC_BYTES >> 20} MiB; a spec is a page of YAML: check the path")
        node = yaml.compose(data.decode(), Loader=yaml.SafeLoader)
        if node is None:
            return None
        _check_node(path, node)
        return yaml.SafeLoader(data.decode()).construct_document(node)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise UserError(f"{path}: YAML syntax error{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read the spec ({err.__class__.__name__}); check the file") from None


def _check_node(path: Path, root: yaml.Node) -> None:
    """Refuse duplicate keys and an expansion past MAX_VALUES (memoised: a shared node is sized once)."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(path, node)
        if not children_done and any(id(c) not in sizes for c in children):
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            continue
        sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
        if sizes[id(node)] > MAX_VALUES + len(sizes):  # values written out (a long seed list) count once
            line = node.start_mark.line + 1
            raise UserError(
                f"{path}: line {line}: YAML aliases expand this document past {MAX_VALUES:,} values; "
                "write the values out, or use fewer aliases"
            )


def _children(path: Path, node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if not isinstance(node, yaml.MappingNode):
        return []
    seen: dict[str, int] = {}
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode):
            if key.value in seen:
                raise UserError(
                    f"{path}: line {key.start_mark.line + 1}: the key {key.value!r} is given twice in one mapping "
                    f"(first at line {seen[key.value]}); keep one"
                )
            seen[key.value] = key.start_mark.line + 1
    return [n for pair in node.value for n in pair]
