"""The sweep spec: YAML or a dict -> validated (`sweep.SweepSpec`) -> resolved once into typed values
(`resolve.Sweep`). Everything after the front door (`load_sweep`) takes a `Sweep`.

    strict.py     the strict base of every section, ranges, the identity rule, one-line errors
    data.py       `data:` (sources, tokenizer, validation, budgets, order)
    train.py      `train:` (`TrainSpec`, and `TrainGrid`: its fields as axes)
    stopping.py   `epochs: {max, stop}`: the adaptive stop and its rules
    ladders.py    `search:` and the arithmetic of ladders
    axes.py       the axes, their typed values (`Model`, `Point`, `Selector`)
    sections.py   resources, fault tolerance, tracking, ensemble, distill, evaluate
    sweep.py      `SweepSpec`: the spec as written, validated
    resolve.py    `Sweep`: every value typed once, every default applied
    load.py       YAML / dict -> `Sweep`
"""

from scalegrid.spec.axes import (
    AXES, EXTRA_AXES, POINT_AXES, SEARCHABLE, TRAINER_NAMES, AxisValue, Model, Point, Selector, axis_key, model_label, shape_from_dict,
)
from scalegrid.spec.data import SHUFFLE_SEED, DataSpec, GaussianDataSpec, SyntheticCorpusSpec, TokenizerSpec, ValidationSpec
from scalegrid.spec.ladders import Ladders, SearchSpec
from scalegrid.spec.load import SpecSource, load_spec, load_sweep, parse_spec
from scalegrid.spec.resolve import Adaptive, Distillation, Ensembles, Sweep, resolve
from scalegrid.spec.sections import (
    AdaptiveSpec, DistillSpec, EnsembleSpec, EvaluateSpec, FaultToleranceSpec, MlflowSpec, ResourcesSpec, TrackingSpec, WandbSpec,
)
from scalegrid.spec.stopping import StopSpec
from scalegrid.spec.strict import describe_error, hashed_fields, hashed_unless_default, not_hashed
from scalegrid.spec.sweep import SweepSpec
from scalegrid.spec.train import TRAIN_AXES, TrainGrid, TrainSpec

__all__ = [
    "AXES", "EXTRA_AXES", "POINT_AXES", "SEARCHABLE", "TRAINER_NAMES", "TRAIN_AXES", "SHUFFLE_SEED",
    "AxisValue", "Model", "Point", "Selector", "axis_key", "model_label", "shape_from_dict",
    "DataSpec", "GaussianDataSpec", "SyntheticCorpusSpec", "TokenizerSpec", "ValidationSpec", "Ladders", "SearchSpec",
    "SpecSource", "load_spec", "load_sweep", "parse_spec", "Adaptive", "AdaptiveSpec", "Distillation", "Ensembles", "Sweep", "resolve",
    "DistillSpec", "EnsembleSpec", "EvaluateSpec", "FaultToleranceSpec", "MlflowSpec", "ResourcesSpec", "TrackingSpec", "WandbSpec",
    "StopSpec", "describe_error", "hashed_fields", "hashed_unless_default", "not_hashed", "SweepSpec", "TrainGrid", "TrainSpec",
]
