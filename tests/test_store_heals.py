"""The store heals (issue 25): every file read back from a results directory is checked, one rule
per kind; a damaged one is set aside with a warning naming it, and what it stood for is made again."""

from __future__ import annotations

import json
import os
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sweep_fixtures import TINY_LM
from scalegrid import load_runs, store
from scalegrid.cli import main
from scalegrid.orchestrator import leases
from scalegrid.orchestrator.leases.heartbeat import UNREADABLE
from scalegrid.orchestrator.planning.stage_graph import waiting_for
from scalegrid.storage import CACHE_MARKER, MODEL_MARKER, layout
from scalegrid.storage.artifacts import model_problem, teacher_corpus_problem, token_cache_problem
from scalegrid.storage.layout import CURVES, RUNS


def a_run(results: Path, trial_id: str, status: str = "COMPLETED") -> None:
    row = {c: None for c in store.RUN_COLUMNS} | {"trial_id": trial_id, "sweep": "s", "stage": "train", "status": status}
    store.write_run(layout(results), store.RunRow(**row))


def test_damaged_run_files_are_left_out_and_named(tmp_path):
    for tid in ("aaaa", "bbbb", "cccc"):
        a_run(tmp_path, tid)
    runs = tmp_path / "runs"
    (runs / "dddd.parquet").mkdir()  # a directory in a run file's place
    pq.write_table(pa.table({"a": [1], "b": [2]}), runs / "eeee.parquet")  # a foreign file
    shutil.copy(runs / "aaaa.parquet", runs / "ffff.parquet")  # a copy under another name
    a_run(tmp_path, "gggg", "FAILED")
    os.replace(runs / "gggg.parquet", runs / "hhhh.parquet")  # a planted FAILED row of another trial
    (runs / "iiii.parquet").write_bytes(b"not parquet")
    bomb = pa.table({"trial_id": ["jjjj"], "status": ["COMPLETED"], "stage": ["train"], "sweep": ["s"], "error": ["x" * (8 << 20)]})
    pq.write_table(bomb, runs / "jjjj.parquet", compression="zstd")  # kilobytes that expand to megabytes
    assert (runs / "jjjj.parquet").stat().st_size < 64 << 10

    found = store.scan(layout(tmp_path), RUNS)
    assert sorted(found.frame["trial_id"]) == ["aaaa", "bbbb", "cccc"]  # 5 files, 3 rows for 3 ids
    why = {path.rsplit("/", 1)[-1]: reason for path, reason in found.unreadable}
    assert why["dddd.parquet"] == "not a file" and "no trial_id, status" in why["eeee.parquet"]
    assert "'aaaa', not the file's name" in why["ffff.parquet"] and "'gggg', not the file's name" in why["hhhh.parquet"]
    assert "not a Parquet file" in why["iiii.parquet"] and "MiB uncompressed" in why["jjjj.parquet"]
    assert store.run_status(layout(tmp_path), "ffff") is None and store.run_status(layout(tmp_path), "aaaa") == "COMPLETED"


def test_a_new_row_sets_a_damaged_file_aside_first(tmp_path):
    (tmp_path / "runs" / "dddd.parquet").mkdir(parents=True)
    pq.write_table(pa.table({"a": [1]}), tmp_path / "runs" / "eeee.parquet")
    a_run(tmp_path, "dddd")
    a_run(tmp_path, "eeee")
    names = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert names[:2] == ["dddd.parquet", "dddd.parquet.corrupt-" + names[1].rsplit("-", 1)[1]]
    assert any(n.startswith("eeee.parquet.corrupt-") for n in names)
    assert sorted(store.scan(layout(tmp_path), RUNS).frame["trial_id"]) == ["dddd", "eeee"]


def test_curve_files_name_their_trial(tmp_path):
    results = layout(tmp_path)
    store.write_curves(results, "aaaa", [{"step": 1, "val_loss": 1.0}])
    shutil.copy(tmp_path / "curves" / "aaaa.parquet", tmp_path / "curves" / "bbbb.parquet")
    found = store.scan(results, CURVES)
    assert list(found.frame["trial_id"]) == ["aaaa"] and "not the file's name" in found.unreadable[0][1]


def test_an_unreadable_lease_holds_until_it_expires_then_is_taken_over(tmp_path):
    results = layout(tmp_path)
    directory = leases.lease_dir(results, "t1")
    directory.mkdir(parents=True)
    (directory / "gen-000001").write_text('{"garbage')
    assert leases.holder(results, "t1", expiry_s=60)["owner"] == UNREADABLE
    lease, holder = leases.acquire(results, "t1", owner="me", expiry_s=60)
    assert lease is None and holder["owner"] == UNREADABLE  # young: someone may still be writing it
    old = time.time() - 120
    os.utime(directory / "gen-000001", (old, old))
    lease, holder = leases.acquire(results, "t1", owner="me", expiry_s=60)
    assert lease is not None and holder is None and lease.path.name == "gen-000002"  # taken over, no contention error


def safetensors(path: Path, header: bytes, body: bytes = b"") -> None:
    path.write_bytes(struct.pack("<Q", len(header)) + header + body)


def test_a_saved_model_is_checked_from_its_files(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    safetensors(good / "model.safetensors", b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', b"\0" * 4)
    (good / "config.json").write_text('{"model_type": "llama"}')
    assert model_problem(good) is None
    pickled = tmp_path / "pickled"
    shutil.copytree(good, pickled)
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    assert "pickled weights" in model_problem(pickled)
    huge = tmp_path / "huge"
    shutil.copytree(good, huge)
    (huge / "model.safetensors").write_bytes(struct.pack("<Q", 2**62) + b"{}")
    assert "a header of 4,611,686,018,427,387,904 bytes" in model_problem(huge)
    code = tmp_path / "code"
    shutil.copytree(good, code)
    (code / "config.json").write_text('{"auto_map": {"AutoModel": "evil.Model"}}')
    assert "names code to import" in model_problem(code)


def test_a_teacher_corpus_and_a_token_cache_are_checked_from_their_files(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / CACHE_MARKER).write_text(json.dumps({"sequences": 2, "seq_len": 3}))
    np.save(corpus / "tokens.npy", np.arange(6, dtype=np.int32))
    assert teacher_corpus_problem(corpus, CACHE_MARKER) is None
    np.save(corpus / "tokens.npy", np.array([{"a": 1}] * 6, dtype=object), allow_pickle=True)
    assert "Python objects in dtype" in teacher_corpus_problem(corpus, CACHE_MARKER)  # refused from its header, never unpickled

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "train.bin").write_bytes(np.arange(10, dtype=np.uint16).tobytes())
    (cache / "val.bin").write_bytes(np.arange(4, dtype=np.uint16).tobytes())
    meta = {"dtype": "uint16", "train_tokens": 10, "val_tokens": 4}
    (cache / CACHE_MARKER).write_text(json.dumps(meta))
    assert token_cache_problem(cache, CACHE_MARKER) is None
    (cache / CACHE_MARKER).write_text(json.dumps(meta | {"train_tokens": 1_000_000}))  # overstates its length
    assert "train.bin holds 20 bytes, where meta.json says 1,000,000" in token_cache_problem(cache, CACHE_MARKER)
    (cache / CACHE_MARKER).write_text(json.dumps(meta | {"dtype": "object"}))
    assert "not a token dtype" in token_cache_problem(cache, CACHE_MARKER)
    (cache / CACHE_MARKER).write_text(json.dumps(meta))
    (cache / "tokenizer").mkdir()
    (cache / "tokenizer" / "tokenizer_config.json").write_text('{"auto_map": {"AutoTokenizer": "evil.T"}}')
    assert "names code to import" in token_cache_problem(cache, CACHE_MARKER)


def test_a_pending_stage_says_what_it_waits_for():
    status = {"a": "COMPLETED", "b": "COMPLETED"}
    assert "members to train" in waiting_for(["a", "b", "c"], status, lambda t: True)
    assert "the saved weights of member b" in waiting_for(["a", "b"], status, lambda t: t != "b")


def test_a_sweep_heals_every_damaged_file_it_reads(ray_local, write_spec, tmp_path, capsys):
    """One sweep, damaged every way a store can be, runs again to the end: each damaged file set
    aside and named, each trial, model, cache and ensemble made again."""
    results = tmp_path / "results"
    spec = write_spec({**TINY_LM, "seed": [0, 1], "ensemble": {"members": [2], "where": [{"seed": 0}]}})
    assert main(["run", str(spec), "--no-report"]) == 0
    runs = load_runs(results)
    members = sorted(runs[(runs["stage"] == "train") & (runs["seed"] == 0)]["trial_id"])
    other = runs[(runs["stage"] == "train") & (runs["seed"] == 1)]["trial_id"].item()
    (results / "models" / members[1] / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")  # a member's weights pickled
    shutil.copy(results / "runs" / f"{other}.parquet", results / "runs" / "0000000000000000.parquet")  # a copy
    (results / "runs" / f"{other}.parquet").unlink()
    (results / "runs" / f"{other}.parquet").mkdir()  # a directory where a run row was
    (cache,) = (results / "cache" / "tokens").iterdir()
    meta = json.loads((cache / CACHE_MARKER).read_text())
    (cache / CACHE_MARKER).write_text(json.dumps(meta | {"train_tokens": meta["train_tokens"] * 10}))
    for ensemble in (results / "ensembles").iterdir():
        ensemble.unlink()  # the ensemble is evaluated again, on the member trained again
    capsys.readouterr()

    assert main(["run", str(spec), "--no-report"]) == 0
    err = capsys.readouterr().err
    assert f"runs/{other}.parquet is damaged (not a file)" in err and "0000000000000000.parquet is damaged" in err
    assert f"models/{members[1]} is damaged (it holds pickled weights" in err and "its trial is trained again" in err
    assert "cache/tokens" in err and "is damaged (train.bin holds" in err and "it is built again" in err
    runs = load_runs(results)
    assert set(runs["status"]) == {"COMPLETED"} and len(runs[runs["stage"] == "train"]) == 3 and len(runs[runs["stage"] == "ensemble"]) == 2
    assert not (results / "models" / members[1] / "pytorch_model.bin").exists() and (results / "models" / members[1] / MODEL_MARKER).is_file()
    assert any(p.name.startswith(f"{members[1]}.corrupt-") for p in (results / "models").iterdir())
    assert len([p for p in (results / "runs").iterdir() if ".corrupt-" in p.name]) == 2
    assert main(["run", str(spec), "--no-report"]) == 0 and "damaged" not in capsys.readouterr().err  # healed for good


def test_the_optimum_of_a_search_without_kept_weights_is_trained_again_for_its_ensemble(ray_local, write_spec, tmp_path):
    spec = write_spec({**TINY_LM, "epochs": None, "keep_weights": False, "ensemble": {"members": [2]},
                       "search": {"axes": {"epochs": [1, 2]}, "start": {"epochs": 1}}})
    assert main(["run", str(spec), "--no-report"]) == 0
    runs = load_runs(tmp_path / "results")
    assert len(runs[runs["stage"] == "ensemble"]) == 2 and set(runs["status"]) == {"COMPLETED"}
