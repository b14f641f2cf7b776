"""The downstream tasks of `evaluate:`: which lm-evaluation-harness tasks a spec names, and the task
scalegrid makes from a synthetic corpus's facts.

    tasks = resolve_tasks(["synthetic_facts", "arc_easy"], include=[], synthetic=spec)   # at `plan`: TaskRefs
    write_facts_task(spec, directory)      # synthetic_facts.yaml + synthetic_facts.jsonl: a harness task

A name is looked up, in order, as `synthetic_facts` (needs `data.source: synthetic`), in the
spec's `include` directories (read here, they are small), then in the harness's own task list.
That list is ~15,000 YAML files: it is indexed once per installed harness version and kept in this
machine's cache (`~/.cache/scalegrid/lm_eval/`), so `plan` reads one JSON file. Every check is one
line naming the task and the fix: an unknown name (with the list's closest names), a group or tag
(scalegrid scores one task at a time: list its tasks), a task that generates text (scored by
exact match of a sampled answer: not defined for an ensemble's averaged distribution here).

A task's identity for `evaluate:` is its name and `metadata.version`; the harness's version is
part of every evaluation's identity too (`harness_version`). lm-evaluation-harness is an optional
extra (`pip install -c constraints.txt -e '.[eval]'`); nothing here imports it unless a spec
evaluates.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path

from scalegrid.data.synthetic import FACTS_VERSION, fact_questions
from scalegrid.errors import UserError
from scalegrid.spec import SyntheticCorpusSpec
from scalegrid.storage import node_cache_dir

FACTS_TASK = "synthetic_facts"
SCORED_OUTPUTS = ("multiple_choice", "loglikelihood", "loglikelihood_rolling")
INSTALL = "pip install -c constraints.txt -e '.[eval]'"


@dataclass(frozen=True)
class TaskRef:
    """One task as resolved at `plan`: what the evaluation's identity and the Ray task need."""

    name: str
    version: str  # the task's `metadata.version`, as text ("" when it declares none)
    output_type: str  # multiple_choice | loglikelihood | loglikelihood_rolling | "" (a Python task)
    yaml_path: str | None = None  # a task of an `include` directory (absolute); None: the harness's own, or synthetic_facts

    @property
    def local(self) -> bool:
        """Its data is on this machine (an `include` task, synthetic_facts): no hub is needed."""
        return self.yaml_path is not None or self.name == FACTS_TASK


def harness_version() -> str | None:
    """The installed lm-evaluation-harness's version; None when it is not installed."""
    try:
        return importlib.metadata.version("lm_eval")
    except importlib.metadata.PackageNotFoundError:
        return None


def resolve_tasks(names: list[str], include: list[str], *, synthetic: SyntheticCorpusSpec | None) -> tuple[TaskRef, ...]:
    """Each named task, found and checked; a bad one is a UserError naming it and the fix."""
    if harness_version() is None:
        raise UserError(f"evaluate: needs lm-evaluation-harness, which is not installed; {INSTALL}")
    local = _local_index(include)
    harness: dict[str, list[str]] | None = None
    refs = []
    for i, name in enumerate(names):
        where = f"evaluate.tasks[{i}]"
        if name == FACTS_TASK:
            if synthetic is None:
                raise UserError(f"{where}: {FACTS_TASK} is made from a synthetic corpus's facts; it needs data.source: synthetic")
            refs.append(TaskRef(FACTS_TASK, str(FACTS_VERSION), "multiple_choice"))
            continue
        if name in local:
            kind, version, output, path = local[name]
            refs.append(_checked(where, name, kind, version, output, path))
            continue
        harness = harness if harness is not None else harness_catalogue()
        if name not in harness:
            known = [*harness, *local, FACTS_TASK]
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            hint = f" (closest: {', '.join(close)})" if close else ""
            raise UserError(f"{where}: unknown task {name!r}{hint}; name a task of lm-evaluation-harness's list, "
                            "a task in evaluate.include, or synthetic_facts")
        kind, version, output, children = harness[name]
        refs.append(_checked(where, name, kind, version, output, None, children))
    return tuple(refs)


def _checked(where: str, name: str, kind: str, version: str, output: str, path: str | None, children: str = "") -> TaskRef:
    if kind in ("group", "tag"):
        some = f" (its tasks: {children})" if children else ""
        raise UserError(f"{where}: {name} is a {kind} of lm-evaluation-harness tasks{some}; list the tasks themselves")
    if output and output not in SCORED_OUTPUTS:
        raise UserError(f"{where}: {name} generates text (output_type {output}); scalegrid scores "
                        f"{', '.join(SCORED_OUTPUTS)} tasks, for single models and ensembles alike")
    return TaskRef(name, version, output, path)


def _entries(paths: list[Path]) -> dict[str, list[str]]:
    """name -> [kind, version, output_type, yaml path or some child tasks] of every task, group and
    tag in `paths` (the harness's own indexer: its YAML loader resolves `include:` between files)."""
    from lm_eval.tasks._index import Kind, TaskIndex

    kinds = {Kind.TASK: "task", Kind.PY_TASK: "task", Kind.GROUP: "group", Kind.TAG: "tag"}
    out = {}
    for name, entry in TaskIndex.build(paths).items():
        cfg = entry.cfg or {}
        version = (cfg.get("metadata") or {}).get("version")
        kind = kinds.get(entry.kind, "task")
        last = (str(entry.yaml_path) if entry.yaml_path is not None else "") if kind == "task" else _some_children(entry, cfg)
        out[name] = [kind, "" if version is None else str(version), str(cfg.get("output_type") or ""), last]
    return out


def _some_children(entry, cfg) -> str:
    """A group's first tasks (its `task:` list) or a tag's (the tasks that carry it), for a message."""
    listed = cfg.get("task") if isinstance(cfg.get("task"), list) else sorted(getattr(entry, "tags", ()) or ())
    names = [c if isinstance(c, str) else str(c.get("group") or c.get("task")) for c in listed]
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def _local_index(include: list[str]) -> dict[str, tuple[str, str, str, str]]:
    """The tasks of the spec's `include` directories: name -> (kind, version, output_type, yaml path)."""
    dirs = []
    for i, directory in enumerate(include):
        path = Path(directory).expanduser().absolute()
        if not path.is_dir():
            raise UserError(f"evaluate.include[{i}]: {directory} is not a directory; give a directory of lm-evaluation-harness task YAMLs")
        dirs.append(path)
    return {name: tuple(entry) for name, entry in _entries(dirs).items()} if dirs else {}


def harness_catalogue() -> dict[str, list[str]]:
    """The harness's own task list (name -> [kind, version, output_type, some child tasks]), indexed
    once per installed version into this machine's cache."""
    cached = node_cache_dir() / "lm_eval" / f"tasks-{harness_version()}.json"
    if cached.is_file():
        try:
            return json.loads(cached.read_text())
        except ValueError:  # a torn write: index again
            pass
    import lm_eval.tasks

    catalogue = _entries([Path(lm_eval.tasks.__file__).parent])
    for entry in catalogue.values():
        if entry[0] == "task":
            entry[3] = ""  # the harness finds its own files
    cached.parent.mkdir(parents=True, exist_ok=True)
    temporary = cached.with_suffix(f".tmp-{id(catalogue)}")
    temporary.write_text(json.dumps(catalogue, sort_keys=True))
    temporary.replace(cached)
    return catalogue


# --- the synthetic corpus's facts as a harness task -----------------------------------------------


def facts_task_yaml(data_file: str) -> str:
    """The task's YAML: one multiple-choice question per line of `data_file` (JSON lines)."""
    return "\n".join([
        f"task: {FACTS_TASK}",
        "dataset_path: json",
        "dataset_kwargs:",
        f"  data_files: {{test: {json.dumps(data_file)}}}",
        "output_type: multiple_choice",
        "test_split: test",
        "fewshot_split: test",
        "doc_to_text: query",
        "doc_to_choice: choices",
        "doc_to_target: gold",
        "metric_list:",
        "  - {metric: acc, aggregation: mean, higher_is_better: true}",
        "  - {metric: acc_norm, aggregation: mean, higher_is_better: true}",
        f"metadata: {{version: {FACTS_VERSION}}}",
        "",
    ])


def write_facts_task(spec: SyntheticCorpusSpec, directory: Path) -> Path:
    """synthetic_facts.yaml and synthetic_facts.jsonl in `directory` (the data file named relative
    to the YAML, as `evaluate.include` tasks name theirs); returns the YAML's path."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(q, sort_keys=True) + "\n" for q in fact_questions(spec))
    (directory / f"{FACTS_TASK}.jsonl").write_text(lines)
    yaml_path = directory / f"{FACTS_TASK}.yaml"
    yaml_path.write_text(facts_task_yaml(f"{FACTS_TASK}.jsonl"))
    return yaml_path
