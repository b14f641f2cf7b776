"""`scalegrid jobs status|logs|stop|list [JOB_ID] [--address http://HEAD:8265]`: the Ray Jobs API.

The address defaults to $RAY_API_SERVER_ADDRESS (or an http:// $RAY_ADDRESS). `status` exits 0
while a job is pending or running and when it succeeded, 1 when it failed or was stopped.
"""

from __future__ import annotations

import asyncio
import sys

from scalegrid.orchestrator.execution import ray_jobs as jobs

FINISHED_BADLY = ("FAILED", "STOPPED")


def register(subparsers) -> None:
    sub = subparsers.add_parser("jobs", help="status, logs, stop or list the sweeps submitted to a Ray cluster")
    actions = sub.add_subparsers(dest="action", required=True, parser_class=type(sub))
    for name, helptext in [
        ("status", "a job's status and message"),
        ("logs", "a job's output so far (the sweep's progress lines)"),
        ("stop", "stop a job (finished trials stay in the results)"),
        ("list", "the jobs of the cluster"),
    ]:
        action = actions.add_parser(name, help=helptext)
        if name != "list":
            action.add_argument("job_id", help="the id that `scalegrid submit` printed")
        if name == "logs":
            action.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
        action.add_argument("--address", help="the Ray dashboard, http://HEAD:8265 (default: $RAY_API_SERVER_ADDRESS)")
        action.set_defaults(func=globals()[f"_{name}"])


def _status(args) -> int:
    client = jobs.job_client(args.address)
    info = jobs.call(client, "get_job_info", args.job_id)
    status = str(getattr(info.status, "value", info.status))
    print(f"{args.job_id}: {status}" + (f" ({' '.join(info.message.split())})" if info.message else ""))
    return 1 if status in FINISHED_BADLY else 0


def _logs(args) -> int:
    client = jobs.job_client(args.address)
    if not args.follow:
        sys.stdout.write(jobs.call(client, "get_job_logs", args.job_id))
        return 0
    jobs.call(client, "get_job_status", args.job_id)  # an unknown id is an error, not an endless wait

    async def follow():
        async for lines in client.tail_job_logs(args.job_id):
            sys.stdout.write(lines)
            sys.stdout.flush()

    asyncio.run(follow())
    return _status(args)


def _stop(args) -> int:
    client = jobs.job_client(args.address)
    stopped = jobs.call(client, "stop_job", args.job_id)
    print(f"{args.job_id}: " + ("stop requested" if stopped else "already finished"))
    return 0


def _list(args) -> int:
    client = jobs.job_client(args.address)
    for info in sorted(jobs.call(client, "list_jobs"), key=lambda i: i.start_time or 0):
        status = str(getattr(info.status, "value", info.status))
        print(f"{info.submission_id or info.job_id}  {status:<9}  {info.entrypoint}")
    return 0
