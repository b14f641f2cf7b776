"""A sweep as a Ray job: the entrypoint, the runtime environment, and the Jobs API client.

`scalegrid submit SPEC --address http://HEAD:8265` runs, on the cluster,

    python -m scalegrid.cli run SPEC --address auto --results RESULTS [--max-concurrent N]

in a copy of the current directory (`working_dir`, so the spec and its data files travel with
it; results, virtual environments, git state and caches are left out) with this scalegrid
package on its path (`py_modules`), so the cluster runs the code that was validated here. The
cluster provides the dependencies (torch, transformers, ...: see `cluster.yaml`).

Token authentication: Ray 2.60 heads require a token by default. A client with
`RAY_AUTH_MODE` unset but a token at hand (`RAY_AUTH_TOKEN`, `RAY_AUTH_TOKEN_PATH` or
`~/.ray/auth_token`) sends it; `RAY_AUTH_MODE=disabled` opts out.
"""

from __future__ import annotations

import os
import shlex
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from scalegrid.errors import UserError
from scalegrid.orchestrator.execution.ray_session import unreachable

ADDRESS_ENV = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
EXCLUDES = [
    ".git", ".venv", "venv", "**/__pycache__", "*.egg-info", "results", "reports", ".pytest_cache", "*.pyc",
]


def dashboard_address(address: str | None) -> str:
    """--address, else an http(s) RAY_API_SERVER_ADDRESS / RAY_ADDRESS; checked to answer on TCP."""
    if not address:
        address = next((os.environ[v] for v in ADDRESS_ENV if os.environ.get(v, "").startswith(("http://", "https://"))), None)
        if not address:
            raise UserError("no cluster given: pass --address http://HEAD:8265 (the Ray dashboard) or set RAY_API_SERVER_ADDRESS")
    parts = urlsplit(address)
    try:
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        host = None
    if parts.scheme not in ("http", "https") or not host:
        raise UserError(
            f"--address {address}: expected the Ray dashboard's http://HOST:8265; "
            "a GCS address HOST:6379 is for `scalegrid run --address`"
        )
    reason = unreachable(host, port)
    if reason:
        raise UserError(
            f"--address {address}: no Ray dashboard answers there ({reason}); "
            "start the head with `ray start --head` (dashboard on port 8265) or `ray dashboard cluster.yaml`"
        )
    return address.rstrip("/")


def use_token_if_available() -> None:
    """Send the cluster token when one is at hand and the user did not choose a mode."""
    if os.environ.get("RAY_AUTH_MODE"):
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"
        try:  # Ray reads its mode once per process: refresh it if Ray was already loaded
            from ray._raylet import Config

            Config.initialize("")
        except Exception:  # noqa: BLE001 - an older or newer Ray reads the variable itself
            pass


def job_client(address: str | None):
    """A JobSubmissionClient for the dashboard at `address`; failures are one-line UserErrors."""
    address = dashboard_address(address)
    use_token_if_available()
    import logging

    from ray.job_submission import JobSubmissionClient

    logging.getLogger("ray").setLevel(logging.WARNING)  # not Ray's "Uploading package" lines: ours say what happened
    try:
        return JobSubmissionClient(address)
    except Exception as err:  # noqa: BLE001 - ConnectionError, AuthenticationError, version mismatch
        raise UserError(f"--address {address}: {explain(err)}") from None


def explain(err: BaseException) -> str:
    text = " ".join(str(err).split())
    if "Authentication required" in text or "401" in text:
        return (
            "the cluster requires a token; set RAY_AUTH_TOKEN (print it on the head with `ray get-auth-token`) "
            "or put it in ~/.ray/auth_token"
        )
    if "Authentication failed" in text or "403" in text:
        return "the cluster refused the token; check RAY_AUTH_TOKEN / ~/.ray/auth_token against `ray get-auth-token` on the head"
    if "does not exist" in text or "404" in text:
        return "no such job there; list the cluster's jobs with `scalegrid jobs list`"
    return text[:300] or err.__class__.__name__


def call(client, method: str, *args):
    """One Jobs API call with its errors as one line."""
    try:
        return getattr(client, method)(*args)
    except Exception as err:  # noqa: BLE001 - RuntimeError with the HTTP status, ConnectionError, ...
        where = f"job {args[0]}" if args else getattr(client, "_address", "the cluster")
        raise UserError(f"{where}: {explain(err)}") from None


def entrypoint(spec: str, results: str, *, max_concurrent: int | None, no_report: bool, overrides: Sequence[str] = (),
               verbosity: int = 0) -> str:
    """The job's command: `scalegrid run` of the spec with the submitter's options and `--set` overrides."""
    argv = ["python", "-m", "scalegrid.cli", "run", spec, "--address", "auto", "--results", results]
    if max_concurrent:
        argv += ["--max-concurrent", str(max_concurrent)]
    if no_report:
        argv.append("--no-report")
    for override in overrides:
        argv += ["--set", override]
    if verbosity:
        argv.append("-v" if verbosity > 0 else "-q")
    return shlex.join(argv)


def runtime_env(working_dir: Path, results_inside: str | None = None) -> dict:
    """The working directory (spec, data files) plus this scalegrid package, without results or caches."""
    excludes = list(EXCLUDES)
    if results_inside:
        excludes.append(results_inside)
    return {
        "working_dir": str(working_dir),
        "py_modules": [str(Path(__file__).parents[1])],  # this scalegrid package
        "excludes": excludes,
        "env_vars": {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "RAY_AIR_NEW_OUTPUT": "0"},
    }


def submission_id(sweep: str) -> str:
    return f"scalegrid-{sweep}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
