"""Argument types shared by the commands: argparse turns their errors into one line and exit 2."""

from __future__ import annotations

import argparse


def int_at_least(minimum: int):
    """An argparse `type` for a whole number >= minimum."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"int>={minimum}"
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def add_max_trials(parser: argparse.ArgumentParser) -> None:
    """`--max-trials N`: plan a sweep larger than the default limit (`grid.MAX_TRIALS`)."""
    parser.add_argument("--max-trials", type=positive_int, default=None,
                        help="plan a sweep of more trials than 200,000, the limit that catches a runaway grid")


def add_overrides(parser: argparse.ArgumentParser) -> None:
    """`--set key.path=value`, repeatable: a spec field set from the command line (`spec.load_sweep`)."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
        help="set a spec field as if written in the YAML (repeatable), e.g. --set train.lr=1e-3 --set epochs=[1,2,4]",
    )


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    """`-q` (errors, warnings and the result only) and `-v` (Ray's own messages and the workers' output too)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1, default=0,
                       help="no live progress: errors, warnings and the result only")
    group.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=1,
                       help="also Ray's own messages and the trials' output (otherwise kept in a log file)")
