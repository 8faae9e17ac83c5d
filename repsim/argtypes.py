"""argparse types for command-line options that take counts and sizes.

A bad value (``--n 0``, ``--threads 0``) becomes the parser's usage error, which
names the option and exits 2, instead of a ZeroDivisionError or a torch RuntimeError from deep
inside a benchmark or a training loop.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def at_least(minimum: int) -> Callable[[str], int]:
    """A whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"whole number >= {minimum}"
    return parse


__all__ = ["at_least"]
