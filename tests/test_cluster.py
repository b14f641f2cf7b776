"""`scalegrid submit` and `scalegrid jobs` against a real Ray head on 127.0.0.1 (Jobs API, token auth)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ray_head import RayHead
from sweep_fixtures import LINREG
from scalegrid import load_runs
from scalegrid.cli import main
from scalegrid.orchestrator.planning import capacity as resources
from scalegrid.spec import ResourcesSpec

REPO = Path(__file__).resolve().parents[1]


def cli(*args, cwd: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The scalegrid CLI in a fresh process: the client's Ray auth mode is its own, as for a user."""
    base = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    base["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), base.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "scalegrid.cli", *map(str, args)],
        cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True, timeout=timeout,
    )


def project(tmp_path: Path, spec: dict) -> Path:
    """A user's project directory: the spec under sweeps/, results (relative) under results/."""
    (tmp_path / "sweeps").mkdir(parents=True)
    (tmp_path / "sweeps" / "lin.yaml").write_text(yaml.safe_dump({**spec, "results": "results/lin"}, sort_keys=False))
    return tmp_path


@pytest.mark.slow
def test_submit_runs_the_sweep_as_a_ray_job(tmp_path):
    proj = project(tmp_path, LINREG)
    with RayHead(num_cpus=2) as head:
        start = time.monotonic()
        out = cli("submit", "sweeps/lin.yaml", "--address", head.dashboard, "--no-report", cwd=proj)
        assert out.returncode == 0, out.stderr[-3000:]
        job_id = out.stdout.strip()
        assert job_id.startswith("scalegrid-lin-") and "\n" not in job_id
        assert "4 trials" in out.stderr and "jobs logs" in out.stderr

        # `logs --follow` streams the sweep's progress until the job ends, then prints its status.
        followed = cli("jobs", "logs", job_id, "--follow", "--address", head.dashboard, cwd=proj, timeout=180)
        assert followed.returncode == 0, (followed.stdout[-3000:], followed.stderr[-2000:])
        assert "lin: 4 trials, 0 done, 4 to run" in followed.stdout and "4/4 done" in followed.stdout
        assert "--address auto" in followed.stdout  # the job's entrypoint joined this cluster
        assert followed.stdout.rstrip().endswith(f"{job_id}: SUCCEEDED (Job finished successfully.)"), followed.stdout[-500:]
        print(f"submit -> SUCCEEDED in {time.monotonic() - start:.1f} s")

        # The job wrote into the project's results, readable here.
        runs = load_runs(proj / "results" / "lin")
        assert len(runs) == 4 and set(runs["status"]) == {"COMPLETED"}
        status = cli("jobs", "status", job_id, "--address", head.dashboard, cwd=proj)
        assert status.returncode == 0 and f"{job_id}: SUCCEEDED" in status.stdout
        logs = cli("jobs", "logs", job_id, "--address", head.dashboard, cwd=proj)
        assert "4/4 done" in logs.stdout

        listed = cli("jobs", "list", "--address", head.dashboard, cwd=proj)
        assert job_id in listed.stdout and "SUCCEEDED" in listed.stdout
        assert "already finished" in cli("jobs", "stop", job_id, "--address", head.dashboard, cwd=proj).stdout

        # A second job, stopped at once: `status` then says STOPPED and exits 1.
        second = cli("submit", "sweeps/lin.yaml", "--address", head.dashboard, "--results", "results/stopped", cwd=proj)
        second_id = second.stdout.strip()
        assert "stop requested" in cli("jobs", "stop", second_id, "--address", head.dashboard, cwd=proj).stdout
        deadline = time.monotonic() + 60
        while "STOPPED" not in (status := cli("jobs", "status", second_id, "--address", head.dashboard, cwd=proj)).stdout:
            assert time.monotonic() < deadline, status.stdout
            time.sleep(1)
        assert status.returncode == 1

        # Unknown ids and a client that sends no token are one-line errors, exit 2.
        unknown = cli("jobs", "status", "no-such-job", "--address", head.dashboard, cwd=proj)
        assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1, unknown.stderr
        assert "no such job" in unknown.stderr
        if (Path.home() / ".ray" / "auth_token").is_file():  # the head requires the token it wrote there
            refused = cli("jobs", "list", "--address", head.dashboard, cwd=proj, env={"RAY_AUTH_MODE": "disabled"})
            assert refused.returncode == 2 and "requires a token" in refused.stderr, refused.stderr[-2000:]


BAD_SUBMITS = [
    ("bad spec", {"epochs": [0]}, ["--address", "http://127.0.0.1:1"], "epochs[0]: must be between 1 and 100000 (got 0)"),
    ("gcs address", {}, ["--address", "127.0.0.1:6379"], "expected the Ray dashboard's http://HOST:8265"),
    ("no address", {}, [], "pass --address http://HEAD:8265"),
    ("unreachable", {}, ["--address", "http://127.0.0.1:1"], "no Ray dashboard answers there"),
    ("results scheme", {}, ["--address", "http://127.0.0.1:1", "--results", "hdfs://nn/x"], "unsupported scheme hdfs://"),
]


@pytest.mark.parametrize("case, change, flags, needle", BAD_SUBMITS, ids=[c[0] for c in BAD_SUBMITS])
def test_bad_submit_is_one_line_and_submits_nothing(case, change, flags, needle, tmp_path, monkeypatch, capsys):
    proj = project(tmp_path, {**LINREG, **change})
    monkeypatch.chdir(proj)
    for var in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    start = time.monotonic()
    code = main(["submit", "sweeps/lin.yaml", *flags])
    assert time.monotonic() - start < 30
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and needle in err, err
    assert not (proj / "results").exists()


def test_submit_needs_the_spec_inside_the_working_dir(tmp_path, monkeypatch, capsys):
    proj = project(tmp_path / "proj", LINREG)
    monkeypatch.chdir(proj)
    (tmp_path / "elsewhere").mkdir()
    code = main(["submit", str(proj / "sweeps" / "lin.yaml"), "--working-dir", str(tmp_path / "elsewhere"),
                 "--address", "http://127.0.0.1:1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "must be inside the working directory" in err and err.count("\n") == 0, err


@pytest.mark.parametrize("argv, needle", [
    (["jobs", "status", "x"], "pass --address"),
    (["jobs", "logs", "x", "--address", "ray://127.0.0.1:10001"], "expected the Ray dashboard's"),
    (["jobs", "stop", "x", "--address", "http://127.0.0.1:1"], "no Ray dashboard answers there"),
])
def test_bad_jobs_calls_are_one_line(argv, needle, monkeypatch, capsys):
    for var in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and needle in err, err


def test_multi_node_cluster_needs_shared_results(tmp_path):
    """A real two-node cluster on 127.0.0.1 (in its own process: this one's Ray belongs to the suite):
    a plain path is refused before anything is written, a file:// URI (a shared mount) runs."""
    spec = tmp_path / "lin.yaml"
    spec.write_text(yaml.safe_dump({**LINREG, "epochs": [1], "results": str(tmp_path / "results")}))
    shared = f"file://{tmp_path}/shared"  # the user says this path is mounted on every node
    script = tmp_path / "two_nodes.py"
    script.write_text(f"""
import os, subprocess, sys
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
from ray.cluster_utils import Cluster
cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 1, "include_dashboard": False}})
cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
try:
    for results in ([], ["--results", {shared!r}]):
        out = subprocess.run([sys.executable, "-m", "scalegrid.cli", "run", {str(spec)!r}, "--address", cluster.address,
                              "--no-report", *results], capture_output=True, text=True, timeout=120)
        sys.stdout.write(f"rc={{out.returncode}}\\n" + out.stderr + "\\n---\\n")
finally:
    cluster.shutdown()
""")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240, env=env)
    refused, accepted = out.stdout.split("\n---\n")[:2]
    assert refused.startswith("rc=2"), (out.stdout, out.stderr[-3000:])
    err = refused.strip().splitlines()
    assert err[-1].startswith("scalegrid: error: results: ") and "cluster has 2 nodes" in err[-1], err
    assert "s3://" in err[-1]
    assert not (tmp_path / "results").exists()  # refused before anything was written
    assert accepted.startswith("rc=0"), accepted[-3000:]
    assert set(load_runs(shared)["status"]) == {"COMPLETED"} and len(load_runs(shared)) == 2


def test_cluster_yaml_passes_rays_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    validate_config(prepare_config(config))
    workers = [t for name, t in config["available_node_types"].items() if name != config["head_node_type"]]
    assert any(t["resources"].get("GPU", 0) >= 1 and t["max_workers"] > t["min_workers"] for t in workers)
    eight = ResourcesSpec(workers=8, gpus_per_worker=1, cpus_per_worker=16)  # a multi-GPU trial fits one node type
    assert any(resources.placeable([t["resources"]], eight) for t in workers)
    setup = "\n".join(config["setup_commands"])
    assert "constraints.txt" in setup and "pip install" in setup and "~/scalegrid" in setup
    assert "~/scalegrid" in config["file_mounts"]


def test_submit_refuses_data_outside_the_working_dir(tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("one document\nanother document\n" * 50)
    proj = project(tmp_path / "proj", {**LINREG, "trainer": "lm", "model": "llama-50k",
                                        "data": {"source": "files", "files": [str(corpus)], "unique_tokens": 64},
                                        "train": {"seq_len": 32}})
    monkeypatch.chdir(proj)
    code = main(["submit", "sweeps/lin.yaml", "--address", "http://127.0.0.1:1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "data.files[0]" in err and "outside the working directory" in err and err.count("\n") == 0, err


def test_slurm_script_uses_rays_own_commands():
    """Every `ray` command of the sbatch script (symmetric-run and the per-node `ray start`s) uses
    only options that this Ray's CLI lists in its --help; the script parses as bash."""
    script = REPO / "scripts" / "slurm-sweep.sbatch"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    ray_cli = str(Path(sys.executable).with_name("ray"))
    commands = [line.split(" ray ", 1)[1] for line in script.read_text().splitlines() if line.strip().startswith("srun") and " ray " in line]
    subcommands = sorted({c.split()[0] for c in commands})
    assert subcommands == ["start", "symmetric-run"], subcommands
    helps = {sub: subprocess.run([ray_cli, sub, "--help"], capture_output=True, text=True, timeout=120).stdout for sub in subcommands}
    helps["symmetric-run"] += helps["start"]  # symmetric-run passes ray start's options on
    for command in commands:
        sub, *words = command.split(" -- ")[0].split()
        for option in (w for w in words if w.startswith("--")):
            assert re.search(rf"(^|\s){re.escape(option)}[\s,=]", helps[sub]), f"ray {sub}: no option {option}"
    symmetric = next(c for c in commands if c.startswith("symmetric-run"))
    assert " -- scalegrid run " in symmetric and "--min-nodes" in symmetric
