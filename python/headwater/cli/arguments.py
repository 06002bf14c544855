"""Argument types of the command line: numbers that refuse what would be meaningless.

``argparse`` prefixes each message with the option (``argument --commit-interval: must be a
finite number of seconds >= 0, got 'inf'``), so the messages name the rule and the value.
"""

from __future__ import annotations

import argparse
import math

from headwater.sync.options import MAX_SECONDS

__all__ = ["MAX_COUNT", "count", "log_level", "positive_seconds", "seconds"]

#: The largest count an option takes (resolvers, syncs at once): beyond it nothing is gained.
MAX_COUNT = 1_000_000


def count(text: str) -> int:
    """A whole number from 1 to :data:`MAX_COUNT`."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 1 to {MAX_COUNT}, got {text!r}"
        )
    return value


def seconds(text: str) -> float:
    """A number of seconds from 0 to :data:`~headwater.sync.options.MAX_SECONDS`."""
    value = _number(text)
    if not 0 <= value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds from 0 to {MAX_SECONDS:g}, got {text!r}"
        )
    return value


def positive_seconds(text: str) -> float:
    """A number of seconds above 0, at most :data:`~headwater.sync.options.MAX_SECONDS`."""
    value = _number(text)
    if not 0 < value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds above 0 and at most {MAX_SECONDS:g}, got {text!r}"
        )
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan  # fails every range check below, so the message shows the text


def log_level(text: str) -> str:
    """A log level name: ``trace``, ``debug``, ``info``, ``warn`` or ``error``."""
    from headwater.logs import level_number

    try:
        level_number(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text
