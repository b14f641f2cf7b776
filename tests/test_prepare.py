"""`scalegrid prepare`: the token cache a sweep needs, built here or as a Ray task on the cluster."""

from __future__ import annotations

import json
import os

from sweep_fixtures import LINREG, TINY_LM, tree_digest
from scalegrid.cli import main


def _corpus_spec(tmp_path, lines: int, **data) -> dict:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"line {i} of a small corpus"}) + "\n" for i in range(lines)))
    return {**TINY_LM, "data": {"source": "files", "files": [str(corpus)], "unique_tokens": 4096,
                                "validation": {"fraction": 0.1, "max_tokens": 256}, **data}}


def test_prepare_builds_the_cache_once_and_plan_reads_it(write_spec, tmp_path, capsys):
    spec = write_spec(_corpus_spec(tmp_path, 400))
    assert main(["prepare", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "tiny: token cache " in out and "training tokens" in out and "read the whole corpus" in out
    (key,) = [p.name for p in (tmp_path / "results" / "cache" / "tokens").iterdir()]
    built = tree_digest(tmp_path / "results" / "cache")
    assert any(name.startswith("files/") for name in built)  # the corpus' hash, under its fingerprint
    assert main(["prepare", str(spec)]) == 0  # found: nothing rebuilt or rewritten
    assert tree_digest(tmp_path / "results" / "cache") == built and key in capsys.readouterr().out
    assert main(["plan", str(spec)]) == 0


def test_prepare_of_generated_data_has_nothing_to_do(write_spec, capsys):
    assert main(["prepare", str(write_spec(LINREG))]) == 0
    assert "nothing to tokenize" in capsys.readouterr().out


def test_prepare_on_a_cluster_is_a_ray_task(ray_local, write_spec, tmp_path, capsys):
    address = ray_local.get_runtime_context().gcs_address
    spec = write_spec(_corpus_spec(tmp_path, 400, tokenize_cpus=1))
    assert main(["prepare", str(spec), "--address", address]) == 0
    meta_files = list((tmp_path / "results" / "cache" / "tokens").glob("*/meta.json"))
    assert len(meta_files) == 1 and json.loads(meta_files[0].read_text())["train_tokens"] >= 4096
    from scalegrid.orchestrator.planning.sweep_plan import make_plan
    from scalegrid.orchestrator.execution.token_build import prepare_tokens

    meta = prepare_tokens(make_plan(spec), on_cluster=True)
    assert meta["pid"] != os.getpid() and meta["train_tokens"] >= 4096  # a Ray worker built it, not the driver
    # A corpus too short for the budget that its file size does not give away (JSON lines: a byte of
    # the file is at most a token), found by the task: its one-line error comes back as the command's.
    short = write_spec({**_corpus_spec(tmp_path, 130), "results": str(tmp_path / "short")}, name="short.yaml")
    assert main(["prepare", str(short), "--address", address]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after any output the Ray worker forwarded
    assert err.startswith("scalegrid: error: data.unique_tokens[0]: 4,096 is larger than the corpus' ")
    assert not (tmp_path / "short").exists()
