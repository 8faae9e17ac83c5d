"""argparse pieces shared by every command line of repsim.

A bad value (``--n 0``, ``--threads 0``) becomes the parser's usage error, which
names the option and exits 2, instead of a ZeroDivisionError or a torch RuntimeError from deep
inside a benchmark or a training loop; an option is taken only by its full name, and a
misspelt one is named with the closest option of its command, a misspelt command or choice
with the closest choice (:class:`Parser`).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

#: what argparse reads as a negative number, not an option (its own rule)
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")

#: The help of every ``--device`` option (:func:`repsim.device.resolve_device` reads the value).
DEVICE_HELP = "cpu | cuda | cuda:N | auto (default: auto, CUDA when available, else the CPU)"


_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|obj|exc):`(~?)([^`]+)`")


def plain_text(doc: str) -> str:
    """A docstring as a terminal shows it: Sphinx roles as their target (``~`` keeps the last
    name, as Sphinx does) and literals without their double backquotes."""

    def target(m: re.Match) -> str:
        return m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2)

    return _ROLE.sub(target, doc).replace("``", "")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that takes options by their full name only. argparse's default takes any
    unambiguous prefix: ``repsim bench probe --set 5`` (``--set`` is an option of ``bench
    all``) set ``--settings`` to 5 without a word. Subparsers are of this class too.

    A usage error names each option it was given that it does not know, with the closest option
    of the command that reads it (``repsim run ... --devcie cpu``: did you mean '--device'?), also
    when argparse reports another error first (``--output DIR`` as ``--out`` missing). A misspelt
    command or choice is named with the closest one (``repsim rnu``: did you mean 'run'?)."""

    #: the arguments of the last parse, whose unknown options :meth:`error` names
    _given: Sequence[str] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        if kwargs.get("description"):  # a module docstring: its Sphinx markup is noise in --help
            kwargs["description"] = plain_text(kwargs["description"])
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        """argparse's, except that arguments left over are reported by the command's own parser:
        its usage line, and its options to suggest (the top-level parser knows none of them)."""
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            owner = self._command_parser(namespace)
            owner._given = extras
            owner.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace

    def _command_parser(self, namespace: argparse.Namespace) -> Parser:
        """The parser of the (sub)command ``namespace`` was parsed for: this one or a subparser."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(namespace, action.dest, None) or "")
                if isinstance(chosen, Parser):
                    return chosen._command_parser(namespace)
        return self

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        """argparse's check of a choice (a command, ``bench NAME``, ``--cluster``), its message
        with the closest choice: ``invalid choice: 'rnu' (did you mean 'run'?) (choose from
        ...)``, Python 3.11's own otherwise, which named the choices only."""
        from repsim.config import did_you_mean

        if action.choices is not None and value not in action.choices:
            hint = did_you_mean(value, [str(c) for c in action.choices])
            listed = ", ".join(map(repr, action.choices))
            raise argparse.ArgumentError(
                action, f"invalid choice: {value!r}{hint} (choose from {listed})"
            )

    def error(self, message: str) -> NoReturn:
        super().error(message + self._unknown_options_hint())

    def _unknown_options_hint(self) -> str:
        """``; repsim run has no option '--devcie' (did you mean '--device'?)`` for the options
        given that this parser does not know, or an empty string."""
        from repsim.config import did_you_mean

        given = list(self._given)
        if "--" in given:
            given = given[: given.index("--")]
        if any(a.nargs in (argparse.PARSER, argparse.REMAINDER) for a in self._actions):
            # what follows the command (repsim run, repsim bench probe) is the command's to read
            given = given[: next((i for i, a in enumerate(given) if a[:1] != "-"), len(given))]
        known = list(self._option_string_actions)
        unknown = [
            name
            for arg in given
            if arg[:1] == "-"
            and len(arg) > 1
            and not _NEGATIVE_NUMBER.match(arg)
            and (name := arg.split("=", 1)[0]) not in known
            # a short option with its value or more flags attached (-vv, -j4): argparse's rule
            and not (arg[1] != "-" and arg[:2] in known)
        ]
        if not unknown:
            return ""
        hints = {name: did_you_mean(name, known) for name in unknown}
        parts = ", ".join(f"{name!r}{hint}" for name, hint in hints.items())
        listed = f"; {self.prog} -h lists them" if self.add_help and not all(hints.values()) else ""
        return f"; {self.prog} has no option{'s' * (len(hints) > 1)} {parts}{listed}"


def at_least(minimum: int, *, zero: str | None = None) -> Callable[[str], int]:
    """A whole number of at least ``minimum``; with ``zero`` (what 0 means, e.g. "skip"), also 0."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum and not (zero and value == 0):
            allowed = f"0 ({zero}) or at least" if zero else "at least"
            raise argparse.ArgumentTypeError(f"must be {allowed} {minimum}, got {value}")
        return value

    parse.__name__ = f"whole number >= {minimum}"
    return parse


__all__ = ["Parser", "at_least"]
