"""argparse pieces shared by every command line of repsim.

A bad value (``--n 0``, ``--threads 0``) becomes the parser's usage error, which
names the option and exits 2, instead of a ZeroDivisionError or a torch RuntimeError from deep
inside a benchmark or a training loop; and an option is taken only by its full name
(:class:`Parser`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that takes options by their full name only. argparse's default takes any
    unambiguous prefix: ``repsim bench probe --set 5`` (``--set`` is an option of ``bench
    all``) set ``--settings`` to 5 without a word. Subparsers are of this class too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


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


__all__ = ["Parser", "at_least"]
