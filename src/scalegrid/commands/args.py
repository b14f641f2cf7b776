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
