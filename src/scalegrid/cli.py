"""The `scalegrid` command: parse -> dispatch to one module of `scalegrid.commands` -> exit code.

Every subcommand lives in `scalegrid/commands/<name>.py` with `register(subparsers)`, which adds its
parser and sets `func(args) -> int`. A `UserError` anywhere becomes one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys

from scalegrid.commands import fit, jobs, plan, prepare, report, run, status, submit
from scalegrid import signals
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
OUTPUT_ERRNOS = (errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG)  # stdout cannot take what the command prints


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signals.install()  # SIGTERM and SIGHUP stop a command as Ctrl-C does
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, not at exit: a reader that closed the pipe is answered quietly below
        return code
    except UserError as err:
        cause = getattr(err, "cause", err)  # raised in a Ray task (a full disk there), it arrives wrapped
        print(f"scalegrid: error: {' '.join(str(cause).split())}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:
        print(f"scalegrid: {signals.said(err)}; re-run the same command to finish what is missing", file=sys.stderr)
        return signals.exit_code(err)
    except BrokenPipeError:  # `scalegrid status RESULTS | head -1`: the reader has all it wanted
        _drop_stdout()
        return CLOSED_PIPE
    except OSError as err:
        if err.errno not in OUTPUT_ERRNOS or err.filename is not None:
            raise
        _drop_stdout()  # stdout itself failed (a full device, /dev/full): nothing more can be written there
        print(f"scalegrid: error: cannot write the output ({err.strerror}); write it somewhere with room", file=sys.stderr)
        return 1


def entry() -> None:
    """The `scalegrid` command: `main`, then out at once. Everything the command started is stopped
    in order by then (the Ray session, heartbeats, the live display, the trackers); leaving without
    the interpreter's teardown keeps native threads of the libraries below (Arrow, Ray's core
    worker, tokenizers) from aborting the exit after the work is done (exit 134 or 139)."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            if stream is sys.stdout:
                _drop_stdout()
                code = code or 1
    os._exit(code)


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush of what is still buffered does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor (a captured stdout): nothing is flushed to a pipe
        pass


if __name__ == "__main__":
    entry()
