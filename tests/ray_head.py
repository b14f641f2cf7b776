"""A real Ray head on 127.0.0.1 in its own process group and temp dir, for the Jobs API tests.

`ray stop` would stop every Ray on the machine (the test session's own, other users'); this head
runs under `ray start --block` and is stopped by signalling its process group only (Ray's own
`AutoscalingCluster` runs `ray stop --force`, so it is not used).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayHead:
    """`with RayHead() as head:` -> head.dashboard (http://127.0.0.1:P), head.gcs (127.0.0.1:P)."""

    def __init__(self, num_cpus: int = 2, env: dict[str, str] | None = None):
        self.num_cpus, self.extra_env = num_cpus, env or {}
        self.temp_dir = tempfile.mkdtemp(prefix="sgh-", dir="/tmp")  # short: Ray's socket paths are limited
        ports = {name: free_port() for name in (
            "port", "dashboard-port", "ray-client-server-port", "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port",
            "node-manager-port", "object-manager-port",
        )}  # fmt: skip
        self.gcs, self.dashboard = f"127.0.0.1:{ports['port']}", f"http://127.0.0.1:{ports['dashboard-port']}"
        self.argv = [
            RAY, "start", "--head", "--block", "--dashboard-host=127.0.0.1", f"--num-cpus={num_cpus}",
            f"--temp-dir={self.temp_dir}", "--disable-usage-stats", *[f"--{k}={v}" for k, v in ports.items()],
        ]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "RayHead":
        env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", **self.extra_env}
        # A job's entrypoint runs `python` from the head's PATH: make it this interpreter (the venv
        # the tests run in), as an activated environment or a cluster's setup would.
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
        for var in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
            env.pop(var, None)
        self.log = open(Path(self.temp_dir, "head.log"), "w")
        self.proc = subprocess.Popen(self.argv, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        host, port = "127.0.0.1", int(self.dashboard.rsplit(":", 1)[1])
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited {self.proc.returncode}: {Path(self.temp_dir, 'head.log').read_text()[-2000:]}")
            try:
                with socket.create_connection((host, port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.3)
        self.__exit__(None, None, None)
        raise RuntimeError("the Ray head's dashboard did not come up in 90 s")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self._kill_leftovers()
        self.log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def _kill_leftovers(self) -> None:
        """Ray's daemons may start their own sessions; find them by this head's temp dir, kill by pid."""
        out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
        for line in out.splitlines():
            pid, _, args = line.strip().partition(" ")
            if self.temp_dir in args or f"--gcs-address={self.gcs}" in args or f"--gcs_address={self.gcs}" in args:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError, PermissionError):
                    pass
