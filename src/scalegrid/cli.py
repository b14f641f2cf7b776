"""The `scalegrid` command: parse -> dispatch to one module of `scalegrid.commands` -> exit code.

Every subcommand lives in `scalegrid/commands/<name>.py` with `register(subparsers)`, which adds its
parser and sets `func(args) -> int`. A `UserError` anywhere becomes one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from scalegrid.commands import fit, jobs, plan, prepare, report, run, status, submit
from scalegrid.errors import UserError
from scalegrid.version import __version__

COMMANDS = (plan, prepare, run, status, fit, report, submit, jobs)  # in the order `--help` lists them


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors also exit 2, on one line
        self.exit(2, f"scalegrid: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="scalegrid",
        description="Data-constrained pre-training sweeps on Ray Tune: results in Parquet, scaling laws, reports.",
    )
    parser.add_argument("--version", action="version", version=f"scalegrid {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


CLOSED_PIPE = 128 + 13  # as a process killed by SIGPIPE: what `yes | head -1` reports


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, not at exit: a reader that closed the pipe is answered quietly below
        return code
    except UserError as err:
        cause = getattr(err, "cause", err)  # raised in a Ray task (a full disk there), it arrives wrapped
        print(f"scalegrid: error: {' '.join(str(cause).split())}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("scalegrid: interrupted; re-run the same command to finish what is missing", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `scalegrid status RESULTS | head -1`: the reader has all it wanted
        _drop_stdout()
        return CLOSED_PIPE


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush of what is still buffered does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor (a captured stdout): nothing is flushed to a pipe
        pass


if __name__ == "__main__":
    sys.exit(main())
