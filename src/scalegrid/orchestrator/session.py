"""The Ray session of a sweep: an embedded local Ray on loopback, or a cluster by address.

An address is checked with a plain TCP connect before Ray is asked to join it, so a wrong
address is one clear error within seconds instead of Ray's long retry loop. Workers' own output
is not forwarded (Ray's shutdown chatter drowns the progress lines): a trial's error is in its
run row, and the full worker logs stay in Ray's session directory. When Ray is already
initialised in this process (a notebook, the test suite), that session is used and left running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from urllib.parse import urlparse

from scalegrid.errors import UserError
from scalegrid.storage import ResultsLayout

CONNECT_TIMEOUT_S = 10


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
    reason = unreachable(host, port)
    if reason:
        raise UserError(
            f"--address {address}: no Ray cluster answers there ({reason}); start one with "
            "`ray start --head` or leave out --address to run on an embedded local Ray"
        )


def check_shared_results(results: ResultsLayout, *, cpus: float, gpus: float) -> None:
    """On a cluster, trials write results on whichever node runs them: a node-local path (not a
    URI) is refused unless the cluster is this one node and a trial fits on it. (An autoscaling
    cluster whose head takes no trials would otherwise pass with one node and fail later.)"""
    import ray

    if results.shared:
        return
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    here = nodes[0].get("Resources", {}) if len(nodes) == 1 else {}
    if len(nodes) == 1 and here.get("CPU", 0) >= cpus and here.get("GPU", 0) >= gpus:
        return
    where = f"the cluster has {len(nodes)} nodes" if len(nodes) > 1 else "trials will run on other nodes (the head cannot hold one)"
    raise UserError(
        f"results: {results} is a path on one node, but {where} and trials write their results where they run; "
        "give shared storage: s3://BUCKET/dir, gs://BUCKET/dir or file:///shared/mount/dir"
    )


@contextlib.contextmanager
def ray_session(address: str | None, *, num_cpus: int | None = None):
    import ray

    if ray.is_initialized():
        yield
        return
    if address:
        check_address(address)
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    else:
        # Keep the embedded Ray on 127.0.0.1: nothing listens on a public interface. `local`: a Ray of
        # its own, even where another `ray start` runs on this machine (ray.init() would join that one).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
        node = ray.nodes()[0]
        print(f"embedded Ray on {node['NodeManagerAddress']} ({int(node['Resources'].get('CPU', 0))} CPUs, no dashboard)", file=sys.stderr)
    try:
        yield
    finally:
        ray.shutdown()
