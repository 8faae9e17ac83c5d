"""Ctrl-C and SIGTERM under the ``repsim`` command, including those Python could not deliver.

Both stop a run the same way: raised where the program is, so the run's worker processes stop
and run.json says it was interrupted (SIGTERM's default action killed the process where it stood
and left orphaned workers). But an exception raised while a finaliser runs (a progress bar's
``__del__`` during garbage collection) is printed as "Exception ignored" and lost: the run went on
and recorded itself as finished, exit 0. So :func:`handler` also notes the signal here, and the
pipeline asks (:func:`check`) between its stages and before it records a finished run.
"""

from __future__ import annotations

import signal


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so a run stops as on Ctrl-C (exit 143, not 130)."""


_received: type[KeyboardInterrupt] | None = None


def handler(signum: int, frame: object) -> None:
    """The command's handler of SIGINT and SIGTERM: noted, then raised where the program is."""
    global _received
    _received = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    raise _received()


def reset() -> None:
    """Forget an earlier signal (a command starts or ends)."""
    global _received
    _received = None


def received() -> bool:
    return _received is not None


def check() -> None:
    """Raise the interrupt that arrived, when one did that nothing has acted on."""
    if _received is not None:
        raise _received()
