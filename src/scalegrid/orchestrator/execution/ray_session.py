"""The Ray session of a sweep: an embedded local Ray on loopback, or a cluster by address.

An address is checked before Ray is asked to join it, so a wrong address is one clear error
within seconds instead of Ray's long retry loop: a TCP connect, then a real handshake in a child
process with a deadline (a GCS answers a node-info request; a Ray Client server completes a gRPC
connection), so that a port where something else listens (an HTTP server) is refused too. Once
joined, `check_feasible` refuses trials that no node of the cluster (nor, with an autoscaler, any
node type it may add) can ever hold. Workers' own output
is not forwarded unless -v (Ray's shutdown chatter drowns the progress lines): a trial's error is
in its run row, and the full worker logs stay in Ray's session directory. When Ray is already
initialised in this process (a notebook, the test suite), that session is used and left running.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import subprocess
import sys
from urllib.parse import urlparse

from scalegrid import signals
from scalegrid.errors import UserError
from scalegrid.gpu_memory import GPU_MEMORY_GB
from scalegrid.orchestrator.display import console
from scalegrid.orchestrator.planning import capacity as resources
from scalegrid.spec import ResourcesSpec
from scalegrid.storage import ResultsLayout, first_line

CONNECT_TIMEOUT_S = 10
HANDSHAKE_TIMEOUT_S = 25  # the whole child process, Ray's import included

# Run in a child process: Ray's C++ client may log, retry or abort; none of that reaches this one.
_GCS_HANDSHAKE = """
import sys
from ray._raylet import InnerGcsClient
client = InnerGcsClient.standalone(sys.argv[1], None, 2000)
print(len(client.get_all_node_info(timeout=5)))
"""
_CLIENT_HANDSHAKE = """
import sys, grpc
grpc.channel_ready_future(grpc.insecure_channel(sys.argv[1])).result(timeout=10)
"""


def unreachable(host: str, port: int) -> str | None:
    """Why a TCP connect to host:port fails within CONNECT_TIMEOUT_S, or None when something listens."""
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as err:
        return err.strerror or err.__class__.__name__


def check_address(address: str) -> None:
    if address == "auto":
        return
    if address.startswith(("http://", "https://")):
        raise UserError(
            f"--address {address}: that is a dashboard (Jobs API) address; `run` joins a cluster by its "
            "GCS address HOST:6379 (or ray://HOST:10001); use `scalegrid submit` for http:// addresses"
        )
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise UserError(f"--address {address}: expected HOST:PORT (e.g. 127.0.0.1:6379) or ray://HOST:PORT")
    reason = unreachable(host, port) or handshake_fails(address, f"{host}:{port}")
    if reason:
        raise UserError(
            f"--address {address}: no Ray cluster answers there ({reason}); start one with "
            "`ray start --head` or leave out --address to run on an embedded local Ray"
        )


def handshake_fails(address: str, host_port: str) -> str | None:
    """Why Ray's own handshake with `address` fails within HANDSHAKE_TIMEOUT_S, or None."""

    script = _CLIENT_HANDSHAKE if address.startswith("ray://") else _GCS_HANDSHAKE
    try:
        done = subprocess.run([sys.executable, "-c", script, host_port], capture_output=True, text=True, timeout=HANDSHAKE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"no Ray handshake within {HANDSHAKE_TIMEOUT_S} s"
    if done.returncode == 0:
        return None
    last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
    return f"something listens, but not Ray: {last[:160]}"


def check_feasible(r: ResourcesSpec, *, embedded: bool) -> None:
    """Refuse, before anything is written, a trial that no node can ever hold: the embedded Ray's
    one node (what this machine has, before Ray starts), or the live nodes of the cluster joined
    and, failing those, the node types of its autoscaler (when it has one). A multi-worker trial's
    workers may spread over nodes. A trial that fits node types but no live nodes waits for the
    autoscaler, and says so."""
    nodes = [_this_machine()] if embedded else _live_nodes()
    if resources.placeable(nodes, r):
        return
    node_types = [] if embedded else [kind for kind, _ in _autoscaler_node_types()]
    if node_types and resources.placeable(node_types * r.workers, r):
        print(f"no node holds a trial ({resources.shown(r)}) now: trials wait for the autoscaler to add one", file=sys.stderr)
        return
    largest = max(nodes + node_types, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
    where = "this machine (the embedded Ray's one node)" if embedded else "any node of this cluster" if r.workers == 1 else "the nodes of this cluster"
    biggest = "it" if embedded else f"the largest {'node type' if node_types else 'node'}"
    fix = "resources.workers / cpus_per_worker / gpus_per_worker" if r.workers > 1 else "resources.cpus / resources.gpus"
    raise UserError(
        f"resources: a trial needs {resources.shown(r)}"
        + (f" and {resources.DRIVER_CPUS:g} CPU for its driver" if r.workers > 1 else "")
        + f", more than {where} can ever hold ({biggest} has {_shown(largest) or 'nothing'}); "
        f"lower {fix}, or run on a cluster with --address"
    )


def _this_machine() -> dict[str, float]:
    """What an embedded Ray's node will have: Ray's own counts of this machine's CPUs and GPUs."""
    from ray._private.accelerators import get_accelerator_manager_for_resource
    from ray._private.utils import get_num_cpus

    return {"CPU": float(get_num_cpus()), "GPU": float(get_accelerator_manager_for_resource("GPU").get_current_node_num_accelerators())}


def _live_nodes() -> list[dict[str, float]]:
    import ray

    return [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]


def _shown(resources: dict[str, float]) -> str:
    return ", ".join(f"{resources[k]:g} {k}" for k in ("CPU", "GPU") if resources.get(k))


def growable_resources() -> dict[str, float]:
    """What trials may share in the joined cluster: its live nodes' resources plus all the nodes its
    autoscaler may add (each node type's resources times its max count; inf for a type without
    one). So a sweep on a cluster that starts cold runs trials side by side once the nodes come:
    the pending trials' resource requests are what make the autoscaler add them. A node the
    autoscaler added already counts twice: a ceiling, never below what is there."""
    import ray

    total = {kind: float(ray.cluster_resources().get(kind, 0.0)) for kind in resources.KINDS}
    for node_type, count in _autoscaler_node_types():
        for kind in resources.KINDS:
            if node_type.get(kind, 0) > 0:
                total[kind] += math.inf if count < 0 else node_type[kind] * count
    return total


def _autoscaler_node_types() -> list[tuple[dict[str, float], int]]:
    """(resources, max count; -1 for none) of each node type the cluster's autoscaler may add ([] without one)."""
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # noqa: BLE001 - an older GCS or no autoscaler: only the live nodes count
        return []
    if config is None:
        return []
    return [(dict(group.resources), group.max_count) for group in config.node_group_configs if group.max_count != 0]


def check_shared_results(results: ResultsLayout, r: ResourcesSpec) -> None:
    """On a cluster, trials write results on whichever node runs them: a node-local path (not a
    URI) is refused unless the cluster is this one node and a trial fits on it. (An autoscaling
    cluster whose head takes no trials would otherwise pass with one node and fail later.)"""
    import ray

    if results.shared:
        return
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) == 1 and resources.placeable([nodes[0].get("Resources", {})], r):
        return
    where = f"the cluster has {len(nodes)} nodes" if len(nodes) > 1 else "trials will run on other nodes (the head cannot hold one)"
    raise UserError(
        f"results: {results} is a path on one node, but {where} and trials write their results where they run; "
        "give shared storage: s3://BUCKET/dir, gs://BUCKET/dir or file:///shared/mount/dir"
    )


def session_resources() -> dict[str, float]:
    """What trials may share: the joined (or embedded) Ray's resources, or before Ray starts, this
    machine's CPUs (what the embedded Ray will have)."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return ray.cluster_resources()
    return {"CPU": float(os.cpu_count() or 1)}


def cluster_gpu_memory_gb() -> float | None:
    """Memory of the smallest GPU type the joined cluster's nodes report (Ray's `accelerator_type:`
    resources), or None when no node with a known GPU is up (e.g. GPU workers that autoscale from zero)."""
    import ray

    kinds = {key.split(":", 1)[1] for key in ray.cluster_resources() if key.startswith("accelerator_type:")}
    known = [GPU_MEMORY_GB[kind] for kind in kinds if kind in GPU_MEMORY_GB]
    return min(known) if known else None


@contextlib.contextmanager
def ray_session(address: str | None, *, num_cpus: int | None = None):
    import ray

    if ray.is_initialized():
        yield
        return
    verbose = console.level() >= console.VERBOSE  # -v: Ray's own messages and the workers' output too
    shown = {"logging_level": logging.INFO if verbose else logging.WARNING, "log_to_driver": verbose}
    if address:
        try:  # `run` checked the address; `auto` with no local cluster is refused here
            ray.init(address=address, **shown)
        except (ConnectionError, RuntimeError) as err:
            raise UserError(f"--address {address}: cannot join a Ray cluster there ({' '.join(str(err).split())[:200]})") from None
    else:
        _start_embedded(num_cpus, shown)
    signals.install()  # Ray's core worker installed its own SIGTERM handler (a stack dump): ours again
    try:
        yield
    finally:
        ray.shutdown()


def _start_embedded(num_cpus: int | None, shown: dict[str, int | bool]) -> None:
    """An embedded Ray on 127.0.0.1 (nothing listens on a public interface) and its reaper; a Ray
    that does not start is one line. `local`: a Ray of its own, even where another `ray start`
    runs on this machine (ray.init() would join that one)."""
    import ray

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **shown)
    except Exception as err:  # noqa: BLE001 - Ray's own start failures (a timeout, a port, shared memory)
        raise UserError(f"the embedded Ray did not start ({first_line(err, 200)}); free memory and /dev/shm, "
                        "or join a running cluster with --address") from None
    session_dir = ray._private.worker._global_node.get_session_dir_path()  # no public name for it in Ray 2.60
    subprocess.Popen(  # stops the session's processes if this driver is killed outright (`ray_reaper.py`)
        [sys.executable, "-m", "scalegrid.orchestrator.execution.ray_reaper", str(os.getpid()), session_dir],
        start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    node = ray.nodes()[0]
    console.info(f"embedded Ray on {node['NodeManagerAddress']} ({int(node['Resources'].get('CPU', 0))} CPUs, no dashboard)")
