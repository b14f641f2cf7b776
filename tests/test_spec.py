"""The sweep spec: shorthand, defaults, and one-line errors that name the field and the fix."""

import pytest

from scalegrid.errors import UserError
from scalegrid.spec import Model, load_spec, load_sweep, parse_spec

BASE = {
    "name": "t",
    "trainer": "lm",
    "model": "llama-50k",
    "data": {"unique_tokens": 1024},
    "epochs": 1,
    "lr": "1e-3",  # PyYAML reads 1e-3 as a string; the spec still takes it as a float
}


def test_scalars_become_axes_and_defaults_fill_in():
    spec = parse_spec(BASE)
    assert spec.model == ["llama-50k"] and spec.epochs == [1] and spec.lr == [0.001]
    assert spec.weight_decay is None and spec.seed == [0]  # as written: the default is the resolve pass's
    assert spec.data.tokenizer.kind == "byte" and spec.results_dir == "results/t"
    sweep = load_sweep(BASE)  # resolved once: every axis typed, every default applied
    assert sweep.values("weight_decay") == (0.0,) and sweep.spec.weight_decay == [0.0] and sweep.values("seed") == (0,)
    (model,) = sweep.values("model")
    assert isinstance(model, Model) and model.label == "llama-50k" and model.shape.num_kv_heads == model.shape.num_heads
    assert sweep.values("lr") == (0.001,) and sweep.train.batch_size == 16


def test_the_training_order_defaults_by_source():
    from scalegrid.spec import SHUFFLE_SEED

    assert parse_spec(BASE).data.shuffle_seed == SHUFFLE_SEED  # finite corpora: shuffled whole, as always
    hub = parse_spec({**BASE, "data": {"unique_tokens": 64, "source": "hub", "hub": "org/x"}}).data
    assert hub.shuffle_seed is None  # a hub corpus is streamed only as far as the budgets need
    files = parse_spec({**BASE, "data": {"unique_tokens": 64, "source": "files", "files": ["a"], "shuffle_seed": None}})
    assert files.data.shuffle_seed is None


@pytest.mark.parametrize("name", ["quickstart", "linreg-reuse", "paper-200m"])
def test_shipped_sweeps_parse(name):
    from pathlib import Path

    spec = load_spec(Path(__file__).parents[1] / "sweeps" / f"{name}.yaml")
    assert spec.name == name


def test_tokenizer_shorthand():
    assert parse_spec({**BASE, "data": {"unique_tokens": 64, "tokenizer": "bpe"}}).data.tokenizer.kind == "bpe"
    hf = parse_spec({**BASE, "data": {"unique_tokens": 64, "tokenizer": "./tok"}}).data.tokenizer
    assert (hf.kind, hf.path) == ("hf", "./tok")


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"epoch": [1]}, "epoch: unknown key (did you mean 'epochs'?)"),
        ({"data": {"unique_tokens": 64, "tokenzier": "byte"}}, "data.tokenzier: unknown key (did you mean 'tokenizer'?)"),
        ({"epochs": []}, "epochs: empty axis"),
        ({"epochs": [0]}, "epochs[0]: must be between 1 and 100000 (got 0)"),
        ({"epochs": "many"}, "epochs[0]: Input should be a valid integer"),
        ({"lr": 0}, "lr[0]: must be > 0 and <= 1e+06 (got 0)"),
        ({"lr": -1e-3}, "lr[0]: must be > 0 and <= 1e+06 (got -0.001)"),
        ({"weight_decay": -0.1}, "weight_decay[0]: must be between 0 and 100 (got -0.1)"),
        ({"model": "llama-5k"}, "unknown model preset 'llama-5k' (did you mean 'llama-50k'?)"),
        ({"trainer": "lmm"}, "unknown trainer 'lmm' (did you mean 'lm'?)"),
        ({"train": {"batch_size": "x"}}, "train.batch_size[0]: Input should be a valid integer"),  # an axis: its values are indexed
        ({"data": {}}, "data.unique_tokens: required field is missing"),
        ({"include": [{"epoch": 2}]}, "include[0]: 'epoch' is not an axis (did you mean 'epochs'?)"),
        ({"model": {"hidden_size": 30, "num_layers": 1, "num_heads": 4, "intermediate_size": 8}}, "not divisible by num_heads"),
        ({"model": {"hiden_size": 32}}, "unknown model size 'hiden_size' (did you mean 'hidden_size'?)"),
        ({"trainer": "linreg"}, "does not fit trainer linreg"),
        ({"name": "bad name!"}, "name: String should match pattern"),
        ({"data": {"unique_tokens": 64, "source": "files"}}, "source `files` needs `files: [path, ...]`"),
        ({"data": {"unique_tokens": 64, "source": "tokens", "files": ["a.bin"]}}, "source `tokens` needs `vocab_size`"),
        ({"data": {"unique_tokens": 64, "source": "tokens", "files": ["a.bin"], "vocab_size": 9, "tokenizer": "bpe"}},
         "source `tokens` takes no tokenizer"),
        ({"data": {"unique_tokens": 64, "vocab_size": 9}}, "`vocab_size` is for source tokens"),
        ({"data": {"unique_tokens": 64, "tokenizer": "bpe", "shuffle_seed": None}}, "set shuffle_seed or use an hf tokenizer"),
        ({"data": {"unique_tokens": 64, "hub_files": ["x/*.zst"]}}, "`hub_files` is for source hub"),
        ({"data": {"unique_tokens": 64, "tokenize_cpus": 0}}, "data.tokenize_cpus: must be between 1 and 1024 (got 0)"),
    ],
)
def test_bad_spec_is_one_line_naming_the_field(change, expected):
    with pytest.raises(UserError) as err:
        parse_spec({**BASE, **change}, source="s.yaml")
    message = str(err.value)
    assert "\n" not in message and message.startswith("s.yaml: ")
    assert expected in message


def test_missing_file_and_yaml_syntax(tmp_path):
    with pytest.raises(UserError, match="spec file not found"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: [a, b\n")
    with pytest.raises(UserError, match=r"YAML syntax error at line \d+"):
        load_spec(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(UserError, match="must be a YAML mapping"):
        load_spec(scalar)
