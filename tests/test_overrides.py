"""`--set key.path=value` on plan, run, prepare and submit: validated as if written in the YAML,
part of the resolved spec that RESULTS/sweeps/ records; bad overrides are one line, exit 2,
before anything is written."""

from __future__ import annotations

import json

import pytest

from sweep_fixtures import LINREG, tree_digest
from test_bad_input import assert_one_line_error
from scalegrid.cli import main
from scalegrid.errors import UserError
from scalegrid.orchestrator.execution.ray_jobs import entrypoint
from scalegrid.spec import load_sweep


def test_an_override_is_the_spec_as_if_written(write_spec):
    path = write_spec(LINREG)
    written = load_sweep(write_spec({**LINREG, "lr": 0.02, "epochs": [1, 2, 4], "train": {"batch_size": 4}}, "written.yaml"))
    overridden = load_sweep(path, ["lr=2e-2", "epochs=[1, 2, 4]", "train.batch_size=4"])
    assert overridden.spec.model_dump(mode="json") | {"results": None} == written.spec.model_dump(mode="json") | {"results": None}
    assert overridden.values("epochs") == (1, 2, 4) and overridden.train.batch_size == 4
    assert load_sweep(path).values("lr") == (0.05,)  # the file is left as it is
    later = load_sweep(path, ["lr=0.1", "lr=0.2"])  # in order: the last one wins
    assert later.values("lr") == (0.2,)
    new_section = load_sweep(path, ["tracking.tensorboard=true"])  # a section the file does not have
    assert new_section.tracking.tensorboard is True


@pytest.mark.parametrize("override, needles", [
    ("lr=-1", ["with --set lr=-1", "lr[0]: must be > 0"]),
    ("train.batch_size=2.5", ["train.batch_size[0]: Input should be a valid integer"]),
    ("tran.batch_size=4", ["tran: unknown key (did you mean 'train'?)"]),
    ("lr.value=1", ["--set lr.value=1: lr is a single value in the spec, not a section; set it whole: --set lr=..."]),
    ("lr", ["--set lr: expected KEY.PATH=VALUE"]),
    ("train..lr=1", ["expected KEY.PATH=VALUE"]),
    ("epochs=[1, 2", ["--set epochs=[1, 2: the value is not valid YAML"]),
])
def test_bad_overrides_are_one_line_before_anything_is_written(override, needles, write_spec, tmp_path, capsys):
    spec = write_spec(LINREG)
    results = tmp_path / "results"
    results.mkdir()
    (results / "keep.txt").write_text("precious")
    before = tree_digest(results)
    for command in ("plan", "run", "prepare"):
        assert_one_line_error(capsys, main([command, str(spec), "--set", override]), *needles)
    assert tree_digest(results) == before
    with pytest.raises(UserError):
        load_sweep(spec, [override])


def test_plan_shows_the_overridden_grid(write_spec, capsys):
    assert main(["plan", str(write_spec(LINREG)), "--set", "epochs=[1,2,3]", "--set", "lr=0.02", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert sorted({t["epochs"] for t in plan["trials"]}) == [1, 2, 3] and {t["lr"] for t in plan["trials"]} == {0.02}


def test_the_sweep_record_holds_the_overridden_spec(ray_local, write_spec, tmp_path):
    spec = write_spec(LINREG)
    assert main(["run", str(spec), "--set", "epochs=3", "--set", "data.unique_tokens=[128]", "-q", "--no-report"]) == 0
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "results" / "sweeps").glob("*.json")]
    assert record["spec"]["epochs"] == [3] and record["spec"]["data"]["unique_tokens"] == [128]
    assert record["spec_path"] == str(spec) and record["overrides"] == ["epochs=3", "data.unique_tokens=[128]"]


def test_submit_passes_the_overrides_to_the_job():
    command = entrypoint("sweeps/x.yaml", "s3://b/x", max_concurrent=None, no_report=False,
                         overrides=["lr=1e-3", "model=[llama-50k, llama-1m]"], verbosity=-1)
    assert command.endswith("--set lr=1e-3 --set 'model=[llama-50k, llama-1m]' -q")
