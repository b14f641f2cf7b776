"""The resolve pass: a validated `SweepSpec` -> a `Sweep`, every value typed once, every default applied.

    sweep = resolve(parse_spec(raw), source="sweeps/quickstart.yaml")
    sweep.values("epochs")        # (1, 4, 16): typed by the axis' own declaration
    sweep.include[0].matches(p)   # a selector: axis -> typed values
    sweep.search.ladders          # each ladder typed and sorted; sweep.search.start_values()
    sweep.distill[0].student      # a student's overrides: a typed `Point`

Everything after this (grid expansion and hashing, the stage graph, the search's cells, the plan)
takes a `Sweep` and never a dict or a spec to validate again; a value that needed typing later
would mean this pass missed it. A bad value is one `UserError` line naming the field
(`spec.yaml: include[0].epochs[0]: must be between 1 and 100000 (got 0)`), before anything else.
"""

from __future__ import annotations

from dataclasses import dataclass

from scalegrid.errors import UserError
from scalegrid.spec.axes import POINT_AXES, AxisContext, AxisValue, Model, Point, Selector, typed_selector, typed_values
from scalegrid.spec.data import DataSpec
from scalegrid.spec.ladders import Ladders, SearchSpec, monotone, on_ladder
from scalegrid.spec.sections import AdaptiveSpec, DistillSpec, EnsembleSpec, EvaluateSpec, FaultToleranceSpec, ResourcesSpec, TrackingSpec
from scalegrid.spec.sweep import SweepSpec
from scalegrid.spec.train import TRAIN_AXES, TrainSpec

DEFAULTS = {"weight_decay": [0.0]}  # an axis neither listed nor searched


@dataclass(frozen=True)
class Adaptive:
    """`adaptive:` resolved: its `where` typed."""

    recipe: AdaptiveSpec
    where: tuple[Selector, ...]


@dataclass(frozen=True)
class Ensembles:
    """`ensemble:` resolved: its `where` typed."""

    recipe: EnsembleSpec
    where: tuple[Selector, ...]

    @property
    def max_members(self) -> int:
        return self.recipe.max_members


@dataclass(frozen=True)
class Distillation:
    """One `distill:` entry resolved: the teacher's grid point as a selector, the student's overrides typed."""

    recipe: DistillSpec
    teacher: Selector  # axis values naming one grid point (`members` left out)
    student: Point  # the axes the student changes from the teacher's point

    @property
    def teacher_members(self) -> int:
        return self.recipe.teacher_members


@dataclass(frozen=True)
class Sweep:
    """A spec resolved: what grid, stage graph, search and plan consume."""

    spec: SweepSpec  # as written (with any `--set` overrides), the defaults applied, the search typed: what RESULTS/sweeps/ records
    source: str  # where it came from, for messages (the file and its overrides, or `spec`)
    axes: tuple[tuple[str, tuple[AxisValue, ...]], ...]  # every axis not searched -> its typed values
    train: TrainSpec  # every train field at its first value
    include: tuple[Selector, ...] = ()
    exclude: tuple[Selector, ...] = ()
    search: Ladders | None = None
    adaptive: Adaptive | None = None
    ensemble: Ensembles | None = None
    distill: tuple[Distillation, ...] = ()
    file: str | None = None  # the spec file (None: a dict from the Python API)
    overrides: tuple[str, ...] = ()  # the command line's `--set key.path=value`, applied to the file's spec

    def values(self, axis: str) -> tuple[AxisValue, ...]:
        """The grid's values on an axis not searched (one value for an axis that does not vary)."""
        return dict(self.axes)[axis]

    @property
    def context(self) -> AxisContext:
        return AxisContext(self.spec.trainer, self.train)

    def valid(self, axis: str, value: AxisValue) -> bool:
        """Whether a value passes the axis' own checks (an extended ladder's next value: epochs >= 1, ...)."""
        try:
            typed_values(axis, [value], axis, self.context)
            return True
        except ValueError:
            return False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def trainer(self) -> str:
        return self.spec.trainer

    @property
    def data(self) -> DataSpec:
        return self.spec.data

    @property
    def resources(self) -> ResourcesSpec:
        return self.spec.resources

    @property
    def fault_tolerance(self) -> FaultToleranceSpec:
        return self.spec.fault_tolerance

    @property
    def tracking(self) -> TrackingSpec:
        return self.spec.tracking

    @property
    def keep_weights(self) -> bool:
        return self.spec.keep_weights

    @property
    def evaluate(self) -> EvaluateSpec | None:
        """`evaluate:` as validated: nothing in it is typed by an axis (its tasks are found at `plan`)."""
        return self.spec.evaluate

    @property
    def results_dir(self) -> str:
        return self.spec.results_dir


def resolve(spec: SweepSpec, *, source: str = "spec") -> Sweep:
    """Type every value of the spec by its axis, once; a bad one is a UserError naming its field."""
    try:
        return _resolve(spec, source)
    except ValueError as err:
        raise UserError(f"{source}: {err}") from None


def _resolve(spec: SweepSpec, source: str) -> Sweep:
    train = TrainSpec.model_validate(spec.train.first())
    context = AxisContext(spec.trainer, train)
    search = _typed_search(spec.search, context) if spec.search else None
    searched = set(search.ladders) if search else set()
    axes = tuple((axis, _listed(spec, axis)) for axis in POINT_AXES if axis not in searched)
    return Sweep(
        spec=_as_recorded(spec, search), source=source, axes=axes, train=train, search=search,
        include=tuple(typed_selector(s, f"include[{i}]", context) for i, s in enumerate(spec.include)),
        exclude=tuple(typed_selector(s, f"exclude[{i}]", context) for i, s in enumerate(spec.exclude)),
        adaptive=None if spec.adaptive is None else Adaptive(
            spec.adaptive, tuple(typed_selector(s, f"adaptive.where[{i}]", context) for i, s in enumerate(spec.adaptive.where))),
        ensemble=None if spec.ensemble is None else Ensembles(
            spec.ensemble, tuple(typed_selector(s, f"ensemble.where[{i}]", context) for i, s in enumerate(spec.ensemble.where))),
        distill=tuple(_distillation(d, i, context) for i, d in enumerate(spec.distill)),
    )


def _listed(spec: SweepSpec, axis: str) -> tuple[AxisValue, ...]:
    """An axis' values as the spec lists them (validated with the spec), a model as a `Model`."""
    if axis == "model":
        return tuple(Model.of(m) for m in spec.model)
    if axis == "unique_tokens":
        return tuple(spec.data.unique_tokens)
    if axis == "data_order":
        return tuple(spec.data.order)
    if axis in TRAIN_AXES:
        return tuple(getattr(spec.train, axis))
    value = getattr(spec, axis)
    return tuple(DEFAULTS[axis] if value is None else value)


def _as_recorded(spec: SweepSpec, search: Ladders | None) -> SweepSpec:
    """The spec as RESULTS/sweeps/ records it: defaults applied, ladders typed and sorted (a new
    frozen copy; the spec as validated is left as it was)."""
    update = {axis: value for axis, value in DEFAULTS.items() if getattr(spec, axis) is None and (search is None or axis not in search.ladders)}
    if search is not None:
        typed_start = search.start_values()
        start = {axis: bool(value) if axis == "from_smaller" else typed_start[axis] for axis, value in spec.search.start.items()}
        update["search"] = spec.search.model_copy(update={"axes": {axis: list(ladder) for axis, ladder in search.axes}, "start": start})
    return spec.model_copy(update=update) if update else spec


def _typed_search(search: SearchSpec, context: AxisContext) -> Ladders:
    """The ladders typed by the axes' own checks and sorted (checked monotone); the start on them."""
    ladders = {}
    for axis, ladder in search.axes.items():
        where = f"search.axes.{axis}"
        ladders[axis] = tuple(monotone(where, list(typed_values(axis, ladder, where, context))))
    for axis in search.start:
        if axis != "from_smaller" and axis not in ladders:
            raise ValueError(f"search.start.{axis}: not a searched axis; start values are for {', '.join(ladders)}")
    start = {}
    for axis, ladder in ladders.items():
        if axis not in search.start:
            start[axis] = ladder[(len(ladder) - 1) // 2]
            continue
        value = search.start[axis]
        start[axis] = on_ladder(ladder, typed_values(axis, [value], f"search.start.{axis}", context)[0])
        if start[axis] is None:
            shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in ladder)
            raise ValueError(f"search.start.{axis}: {value} is not on its ladder [{shown}]; start at one of its values")
    return Ladders(
        axes=tuple(ladders.items()), start=tuple(start.items()), from_smaller=bool(search.start.get("from_smaller", False)),
        extend_edges=search.extend_edges, max_extensions=search.max_extensions, coupled=_coupled(search, ladders),
        full=search.neighbourhood == "full", confirm_seeds=search.confirm_seeds, certify_radius=search.certify_radius,
    )


DEFAULT_COUPLED = (("lr", "epochs"),)  # more epochs want a smaller lr: a diagonal valley


def _coupled(search: SearchSpec, ladders: dict[str, tuple]) -> tuple[tuple[str, str], ...]:
    """The coupled pairs: as written (each two different searched axes), else the default pairs
    whose axes are both searched."""
    if search.coupled is None:
        return tuple(pair for pair in DEFAULT_COUPLED if all(a in ladders for a in pair))
    pairs = []
    for i, pair in enumerate(search.coupled):
        where = f"search.coupled[{i}]"
        if len(pair) != 2 or pair[0] == pair[1]:
            raise ValueError(f"{where}: {pair} is not a pair; name two different searched axes, e.g. [lr, epochs]")
        for axis in pair:
            if axis not in ladders:
                raise ValueError(f"{where}: {axis!r} is not searched; couple two of {', '.join(ladders)}")
        pairs.append((pair[0], pair[1]))
    return tuple(pairs)


def _distillation(d: DistillSpec, i: int, context: AxisContext) -> Distillation:
    teacher = typed_selector({a: v for a, v in d.teacher.items() if a != "members"}, f"distill[{i}].teacher", context)
    student = {}
    for axis, value in d.student.items():
        student[axis] = typed_values(axis, value, f"distill[{i}].student.{axis}", context)[0]
    return Distillation(d, teacher, Point(student))
